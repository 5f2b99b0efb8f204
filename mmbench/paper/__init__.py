"""The sustained-boosting paper (AUG, arXiv 2502.20120 v1): its reported numbers, shipped as
package data (``aug_reported.csv``; ``README.md`` says what each column means)."""
