"""The 3D-convolutional comparison model for AMNetVid, a skorch regressor: :class:`Conv3DRegressor`.

Its network, :class:`~amnetvid_sk.conv3d_network.Conv3DNet` (re-exported here), is AMNetVid with
its ConvLSTM layers replaced by 3D convolutions; the regressor is ``ConvLSTMRegressor`` with that
network, so the training defaults and data checks are AMNetVid's and a difference in Spearman
comes from the maps branch alone.
"""

from __future__ import annotations

from .conv3d_network import Conv3DNet
from .estimators import ConvLSTMRegressor

__all__ = ["Conv3DNet", "Conv3DRegressor"]


class Conv3DRegressor(ConvLSTMRegressor):
    """The 3D-convolutional comparison model (:class:`Conv3DNet`), a skorch regressor.

    ``ConvLSTMRegressor`` with ``module=Conv3DNet``: the same ``X`` (a dict
    ``{'maps': [n, T, C, H, W], 'scores': float32 [n, T]}``, the output of
    ``AttentionSequences``; uint8 JET maps are divided by 255), the same data checks and
    error messages, the same training defaults (MSE, Adam lr 1e-3, batch 32, up to 20
    epochs, early stopping on the validation Spearman), ``random_state``, ``device``,
    ``train_subsets`` / ``test_subsets`` (T-frame subsets of longer inputs) and every other
    parameter of ``ConvLSTMRegressor``, inherited rather than repeated.
    The network's arguments are ``module__*`` parameters (``module__filters``,
    ``module__kernel_size``, ``module__dropout``, ...). The defaults fit the note's JET
    renders (C=9, 70x70); for the raw maps set ``module__map_channels=3,
    module__map_size=14, module__map_scale=196``.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=Conv3DNet
    compile : {"auto", True, False}, default=False
        As in ``ConvLSTMRegressor``; here the 3D convolutions are the whole cost and
        ``torch.compile`` has nothing to fuse between them (``bench/bench_training.py --model
        conv3d`` measured it slightly slower than eager on a CPU).
    **kwargs
        Any parameter of ``ConvLSTMRegressor`` (``lr``, ``max_epochs``,
        ``batch_size``, ``train_split``, ``callbacks``, ``device``,
        ``random_state``, ``module__*``, ``callbacks__*``, ...), with its defaults.

    Attributes
    ----------
    module_ : Conv3DNet
        The trained network (best epoch on the validation part).
    history_ : skorch History
        Per epoch ``train_loss``, ``valid_loss``, ``valid_spearman``.

    Examples
    --------
    >>> from amnetvid_sk.conv3d import Conv3DRegressor
    >>> from amnetvid_sk.testing.synthetic import make_moving_peak_dataset
    >>> maps, scores, y = make_moving_peak_dataset(32)
    >>> X = {"maps": maps, "scores": scores}
    >>> reg = Conv3DRegressor(module__map_channels=3, module__map_size=14, module__map_scale=196,
    ...                       max_epochs=1, random_state=0)
    >>> reg.fit(X, y).predict(X).shape
    (32,)
    """

    def __init__(self, module=Conv3DNet, **kwargs):
        # every other parameter and its default is ConvLSTMRegressor's: nothing to keep in step
        super().__init__(module, **kwargs)
