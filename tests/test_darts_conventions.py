"""Darts users' habits (issue 19, item 2): every common ``TorchForecastingModel`` constructor
argument is honoured by ``MSFTModel`` (with an effect a test can see) or refused with a message
that names what to use instead; ``predict(batch_size, n_jobs)``; ``save("model.pt")`` writes
one file that ``load`` reads back.

Fits use the tiny random Moirai of ``conftest.py`` for a few steps: these tests check the
contract, not accuracy.
"""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest
import torch
from darts.utils.likelihood_models import GaussianLikelihood, QuantileRegression
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.loggers import CSVLogger

from msft_forecast.darts import MSFTModel
from msft_forecast.data.darts_series import write_model_folder

C, H = 48, 12


def _model(backbone, **kwargs) -> MSFTModel:
    params = dict(input_chunk_length=C, output_chunk_length=H, backbone=str(backbone),
                  max_steps=3, batch_size=8, patch_size=16, random_state=0)  # fmt: skip
    params.update(kwargs)
    return MSFTModel(**params)


class Recorder(Callback):
    """What Lightning's loop saw: the learning rate and weight decay at every step, the batch
    size, whether training started."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.weight_decay: float | None = None
        self.optimizer: type | None = None
        self.batch_sizes: list[int] = []
        self.started = False

    def on_train_start(self, trainer, pl_module) -> None:
        self.started = True
        self.weight_decay = trainer.optimizers[0].param_groups[0]["weight_decay"]
        self.optimizer = type(trainer.optimizers[0])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
        self.batch_sizes.append(int(batch["context"].shape[0]))


@pytest.fixture(scope="module")
def darts_style(tiny_moirai_dir, airline, tmp_path_factory):
    """One model built with Darts' arguments, fitted once."""
    work = tmp_path_factory.mktemp("work")
    recorder = Recorder()
    model = _model(
        tiny_moirai_dir,
        batch_size=4,
        likelihood=QuantileRegression(quantiles=[0.05, 0.5, 0.95]),
        optimizer_cls=torch.optim.AdamW,
        optimizer_kwargs={"lr": 0.02, "weight_decay": 0.0},
        lr_scheduler_cls=torch.optim.lr_scheduler.StepLR,
        lr_scheduler_kwargs={"step_size": 1, "gamma": 0.5, "interval": "step"},
        pl_trainer_kwargs={
            "callbacks": [recorder, EarlyStopping("val_loss", patience=5)],
            "logger": CSVLogger(str(work / "csv")),
            "accelerator": "cpu",
        },
        model_name="m1",
        work_dir=str(work),
        save_checkpoints=True,
    )
    model.fit(airline[:-24], verbose=False)
    return model, recorder, work


# ------------------------------------------------------------------------- honoured
def test_likelihood_sets_the_quantiles(darts_style, airline):
    model, _, _ = darts_style
    assert model.quantiles == [0.05, 0.5, 0.95]
    q = model.predict(H, predict_likelihood_parameters=True)
    name = airline.components[0]
    assert q.components.tolist() == [f"{name}_q0.050", f"{name}_q0.500", f"{name}_q0.950"]


def test_optimizer_kwargs_and_scheduler_reach_the_optimizer(darts_style):
    model, recorder, _ = darts_style
    assert recorder.started and recorder.weight_decay == 0.0
    assert recorder.optimizer is torch.optim.AdamW
    assert model.engine.settings.learning_rate == 0.02
    # StepLR(step_size=1, gamma=0.5) stepped every optimiser step
    np.testing.assert_allclose(recorder.lrs[:3], [0.02, 0.01, 0.005])


def test_batch_size_is_the_training_batch(darts_style):
    _, recorder, _ = darts_style
    assert set(recorder.batch_sizes) == {4}


def test_logger_receives_the_losses(darts_style):
    _, _, work = darts_style
    metrics = list((work / "csv").rglob("metrics.csv"))
    assert metrics and "val_loss" in metrics[0].read_text()


def test_save_checkpoints_writes_under_work_dir_and_model_name(darts_style, tiny_moirai_dir):
    model, _, work = darts_style
    folder = work / "m1" / "checkpoints"
    assert (folder / "last.ckpt").is_file()
    again = dict(model_name="m1", work_dir=str(work), save_checkpoints=True)
    with pytest.raises(ValueError, match="force_reset=True"):
        _model(tiny_moirai_dir, **again)
    _model(tiny_moirai_dir, resume=True, **again)  # continues from it: accepted
    assert (folder / "last.ckpt").is_file()
    _model(tiny_moirai_dir, force_reset=True, **again)
    assert not folder.exists()
    with pytest.raises(ValueError, match="checkpoint_dir"):
        _model(tiny_moirai_dir, save_checkpoints=True, checkpoint_dir=str(work / "x"))


def test_n_epochs_caps_the_fit(tiny_moirai_dir, airline):
    # an epoch is val_check_interval steps (one validation each)
    model = _model(tiny_moirai_dir, max_steps=50, val_check_interval=2, n_epochs=1)
    model.fit(airline[:-24], verbose=False)
    assert model.engine.report_.steps == 2


def test_random_state_repeats_the_fit_and_forecasts(tiny_moirai_dir, airline):
    a = _model(tiny_moirai_dir, random_state=7).fit(airline[:-24], verbose=False)
    b = _model(tiny_moirai_dir, random_state=7).fit(airline[:-24], verbose=False)
    np.testing.assert_array_equal(
        a.predict(H, num_samples=20).all_values(), b.predict(H, num_samples=20).all_values()
    )


def test_a_plateau_scheduler_monitors_the_validation_loss(tiny_moirai_dir, airline):
    model = _model(tiny_moirai_dir, lr_scheduler_cls="ReduceLROnPlateau",
                   lr_scheduler_kwargs={"patience": 0}, val_check_interval=1)  # fmt: skip
    assert model.fit(airline[:-24], verbose=False).engine.report_.steps == 3


def test_predict_batch_size_and_n_jobs(darts_style, airline, monkeypatch):
    model, _, _ = darts_style
    series = [airline[:-24], airline[:-12], airline]
    expected = model.predict(H, series=series, num_samples=5)
    seen = []
    forecast = type(model.engine).forecast

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("batch_size"))
        return forecast(self, *args, **kwargs)

    monkeypatch.setattr(type(model.engine), "forecast", spy)
    got = model.predict(H, series=series, num_samples=5, batch_size=1, n_jobs=4)
    assert seen == [1]
    for a, b in zip(got, expected, strict=True):  # sample paths do not depend on batching
        np.testing.assert_allclose(a.all_values(), b.all_values(), rtol=1e-5, atol=1e-6)
    hist = model.historical_forecasts(airline, start=0.9, forecast_horizon=3, retrain=False,
                                      predict_kwargs={"batch_size": 2})  # fmt: skip
    assert seen[-1] == 2 and len(hist) > 0
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(H, batch_size=0)
    with pytest.raises(ValueError, match="without a Lightning Trainer"):
        model.predict(H, trainer=object())
    with pytest.raises(ValueError, match="num_samples"):
        model.predict(H, mc_dropout=True)
    with pytest.raises(TypeError, match="unexpected"):
        model.predict(H, not_a_darts_argument=1)


# --------------------------------------------------------------------------- refused
@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"likelihood": GaussianLikelihood()}, "QuantileRegression"),
        ({"optimizer_cls": torch.optim.Adam}, "torch.optim.AdamW"),
        ({"optimizer_cls": torch.optim.SGD}, "optimizer_kwargs"),
        ({"optimizer_kwargs": {"momentum": 0.9}}, r"\['lr', 'weight_decay'\]"),
        ({"optimizer_kwargs": {"lr": 0.1}, "learning_rate": 0.2}, "pass one of them"),
        ({"lr_scheduler_cls": torch.optim.lr_scheduler.LambdaLR}, "StepLR"),
        ({"lr_scheduler_cls": "os.system"}, "StepLR"),
        ({"lr_scheduler_kwargs": {"gamma": 0.5}}, "lr_scheduler_cls"),
        ({"add_encoders": {"cyclic": {"future": ["month"]}}}, "covariates"),
        ({"loss_fn": torch.nn.L1Loss()}, "QuantileRegression"),
        ({"torch_metrics": object()}, "darts.metrics"),
        ({"log_tensorboard": True}, "TensorBoardLogger"),
        ({"show_warnings": True}, "warnings module"),
        ({"pl_trainer_kwargs": {"gradient_clip_val": 1.0}}, "gradient_clip_val -> gradient_clip"),
        ({"pl_trainer_kwargs": {"max_epochs": 3}}, "max_epochs -> n_epochs"),
        ({"pl_trainer_kwargs": {"default_root_dir": "x"}}, "default_root_dir -> work_dir"),
    ],
)
def test_unsupported_arguments_name_the_alternative(kwargs, names):
    with pytest.raises(ValueError, match=names):
        MSFTModel(**kwargs)


def test_a_scheduler_class_outside_torch_is_refused():
    class StepLR(torch.optim.lr_scheduler.StepLR):  # the right name, not torch's class
        pass

    with pytest.raises(ValueError, match="lr_scheduler_cls"):
        MSFTModel(lr_scheduler_cls=StepLR)


# ------------------------------------------------------------------------ save, load
def test_save_writes_one_file_that_load_reads(darts_style, airline, tmp_path):
    model, recorder, _ = darts_style
    path = tmp_path / "model.pt"
    model.save(str(path))
    assert path.is_file()
    with zipfile.ZipFile(path) as archive:  # JSON and safetensors only: nothing pickled
        assert all(n.endswith((".json", ".safetensors")) for n in archive.namelist())
    loaded = MSFTModel.load(str(path))
    np.testing.assert_array_equal(loaded.predict(H).values(), model.predict(H).values())
    assert loaded.quantiles == [0.05, 0.5, 0.95]
    params = loaded.model_params
    assert params["likelihood"] is None and params["lr_scheduler_cls"] == "StepLR"
    assert params["pl_trainer_kwargs"] == {"accelerator": "cpu"}  # no live objects saved
    assert loaded.engine.settings.checkpoint_dir == model.engine.settings.checkpoint_dir
    # callbacks and loggers come back through load, as in Darts
    again = MSFTModel.load(path, pl_trainer_kwargs={"callbacks": [recorder]})
    callbacks = again.model_params["pl_trainer_kwargs"]["callbacks"]
    assert [type(c) for c in callbacks] == [Recorder]
    # an open binary file, and the default name
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    np.testing.assert_array_equal(
        MSFTModel.load(buffer).predict(H).values(), model.predict(H).values()
    )
    with pytest.raises(ValueError, match="give a file name"):
        model.save(tmp_path)
    with pytest.raises(ValueError, match="not a model written by MSFTModel.save"):
        (tmp_path / "junk.pt").write_bytes(b"junk")
        MSFTModel.load(tmp_path / "junk.pt")


def test_an_archive_that_would_unpack_too_large_is_refused(darts_style, tmp_path, monkeypatch):
    from msft_forecast.data import darts_series

    model, _, _ = darts_style
    path = tmp_path / "model.pt"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        inflated = sum(i.file_size for i in archive.infolist())
    monkeypatch.setattr(darts_series, "MAX_MODEL_BYTES", inflated - 1)
    with pytest.raises(ValueError, match="would unpack to .* not loading it"):
        MSFTModel.load(path)
    monkeypatch.setattr(darts_series, "MAX_MODEL_BYTES", inflated)
    MSFTModel.load(path)


def test_save_default_path_and_drawn_model_name(tiny_moirai_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = _model(tiny_moirai_dir, save_checkpoints=True)  # model_name drawn, as in Darts
    folder = model._settings.checkpoint_dir
    assert folder.startswith(str(tmp_path / "darts_logs")) and "_torch_model_run_" in folder
    model.save()  # Darts' default: "{ClassName}_{date_time}.pt" in the working folder
    (path,) = tmp_path.glob("MSFTModel_*.pt")
    assert MSFTModel.load(path)._settings.checkpoint_dir == folder


def test_folders_of_earlier_versions_still_load(darts_style, tmp_path):
    from msft_forecast.darts_params import saveable_params

    model, _, _ = darts_style
    params = saveable_params(model.model_params, model.quantiles)
    write_model_folder(tmp_path / "old", params, model.engine, model.training_series)
    loaded = MSFTModel.load(tmp_path / "old")
    np.testing.assert_array_equal(loaded.predict(H).values(), model.predict(H).values())


def test_pickle_with_callbacks_and_logger(darts_style):
    model, _, _ = darts_style
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(H).values(), model.predict(H).values())
