"""Atomic result files: SIGKILL in the middle of a write leaves the previous file readable."""

import signal
import subprocess
import sys
import time

import numpy as np
import xarray as xr

from gradflow._trajectory import write_netcdf

WRITER = """
import sys, numpy as np, xarray as xr
from gradflow._trajectory import write_netcdf
path = sys.argv[1]
big = xr.Dataset({"x": ("n", np.random.default_rng(0).standard_normal(10_000_000))})
print("writing", flush=True)
while True:  # rewrite the same file until killed
    write_netcdf(big, path)
"""


def test_sigkill_during_a_write_leaves_the_previous_file_readable(tmp_path):
    path = tmp_path / "result.nc"
    old = xr.Dataset({"loss": ("t", np.arange(5.0))}, attrs={"version": "old"})
    write_netcdf(old, path)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    deadline = time.time() + 60
    # kill while a temporary file is being written (it appears next to the target)
    while time.time() < deadline and not list(tmp_path.glob(".result.nc.*.tmp")):
        time.sleep(0.005)
    assert list(tmp_path.glob(".result.nc.*.tmp")), "the writer never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with xr.open_dataset(path, engine="h5netcdf") as ds:  # still the complete old file
        assert ds.attrs["version"] == "old"
        np.testing.assert_array_equal(ds["loss"].values, np.arange(5.0))
