"""msft_forecast: multi-scale fine-tuning (MSFT) of Moirai and MOMENT for sktime and Darts."""

__version__ = "0.1.0"
