"""Project tools that are not part of the installed ``msft_forecast`` package (run them from a
source checkout, from the repository root)."""
