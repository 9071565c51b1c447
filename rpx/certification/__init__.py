"""Exact one-pixel robustness: proofs that no colour at a pixel fools a classifier.

For one pixel only its C colour values vary, so every activation is a function of C
numbers. `rpx.certify` bounds predict's decision over boxes of colours with linear forms
propagated through its jaxpr on `rpx.incremental`'s receptive-field walk (`bounds`,
`rules`, `forms`), and branches on the colour box where a bound cannot decide, trying
colours directly (`branch`): each pixel ends proved safe, fooled (with a confirmed
witness colour) or, when the budget runs out, undecided.

    cert = rpx.certify(predict, images, labels, region)
    cert.safe, cert.fooled, cert.witness, cert.undecided, cert.robust, cert.vulnerable
"""

from rpx.certification.api import Certificate, certify

__all__ = ["Certificate", "certify"]
