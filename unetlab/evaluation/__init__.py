"""Evaluation: metrics from confusion counts (`metrics`), validation during training (`validation`), the scores
of `unetlab eval` on a labelled folder (`report`), and the evaluation report: a streamed confusion matrix
(`scores`), probability histograms for ranking curves and calibration (`histograms`), boundary metrics
(`boundary`), the ISBI 2012 touching-object scores (`regions`), the whole stream of images scored into one
`Evaluation` (`scoring`), its figures (`figures`) and its self-contained HTML page (`html`)."""
