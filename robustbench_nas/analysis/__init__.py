"""Analysis of robustness datasets: import of the published Jung 2023 data, proxy ranking, prediction, figures."""
