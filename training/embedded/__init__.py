"""The embedded guard's trainer: `python -m training.embedded` runs `train.main`.

`train` (the loop), `data` (mix, labels, split), `policies` (policy wordings), `synth`
(synthetic rows), `model` (the cached frozen prefix and the tuned top layers), `examples`
(the examples rule's bank and calibration, after training: `python -m training.embedded.examples`).
"""
