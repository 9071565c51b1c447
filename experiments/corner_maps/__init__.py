"""The corner study (issue 16): all-class one-pixel corner maps of the paper's networks,
per region, with DE and certificates beside them; `python -m experiments.corner_maps`
(`__main__`).

- `study`, `batches`: the images picked and the resumable batch-by-batch scan;
- `certify`: `rpx.certify` of the same images, batch by batch (`--certify`);
- `regions`, `stats`, `exact`: the regions read from the maps, per-image facts with
  bootstrap intervals, exact intervals and tests for counts of images;
- `analysis`, `de`, `cert_analysis`: the workdir read back, DE beside the maps (`--de`),
  certificates beside the maps;
- `report`, `figures`: report.md, report.json and figures/.
"""
