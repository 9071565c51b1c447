"""The package as a user imports it."""

import subprocess
import sys


def test_segment_is_reachable_after_a_plain_import_and_import_stays_light():
    code = (
        "import sys, numpy as np, rpx\n"
        "assert 'cv2' not in sys.modules and 'rpx.segment' not in sys.modules\n"
        "masks = rpx.segment.grabcut(np.zeros((1, 32, 32, 3), np.uint8))\n"
        "assert masks.shape == (1, 32, 32) and masks.dtype == bool\n"
        "assert rpx.segment is sys.modules['rpx.segment']\n"
        "try:\n"
        "    rpx.no_such_name\n"
        "except AttributeError as error:\n"
        "    assert 'no_such_name' in str(error)\n"
        "else:\n"
        "    raise AssertionError('missing attribute did not raise')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
