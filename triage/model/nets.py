"""The built-in networks: MONAI 3-D classifiers with one input channel and two logits.

Measured costs and the choice of the default are in docs/training.md.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Sequence

import torch

from triage.model.registry import NUM_CLASSES, register_model

Shape = tuple[int, int, int]


@register_model("densenet121")
def densenet121(in_shape: Shape, dropout_prob: float = 0.0) -> torch.nn.Module:
    """MONAI DenseNet121 (init 64, growth 32, blocks 6-12-24-16); ~11 M parameters."""
    from monai.networks.nets import DenseNet121

    return DenseNet121(spatial_dims=3, in_channels=1, out_channels=NUM_CLASSES,
                       dropout_prob=float(dropout_prob))


@register_model("densenet-small")
def densenet_small(in_shape: Shape, init_features: int = 16, growth_rate: int = 8,
                   block_config: Sequence[int] = (2, 4, 6, 4), bn_size: int = 4,
                   dropout_prob: float = 0.0) -> torch.nn.Module:
    """MONAI DenseNet narrowed for CPU training (init 16, growth 8, blocks 2-4-6-4)."""
    from monai.networks.nets import DenseNet

    return DenseNet(spatial_dims=3, in_channels=1, out_channels=NUM_CLASSES,
                    init_features=int(init_features), growth_rate=int(growth_rate),
                    block_config=tuple(int(b) for b in block_config), bn_size=int(bn_size),
                    dropout_prob=float(dropout_prob))


def _resnet(factory: str, widen_factor: float, conv1_t_size: int, conv1_t_stride: int,
            no_max_pool: bool, shortcut_type: str) -> torch.nn.Module:
    from monai.networks.nets import resnet

    return getattr(resnet, factory)(
        spatial_dims=3, n_input_channels=1, num_classes=NUM_CLASSES,
        widen_factor=float(widen_factor), conv1_t_size=int(conv1_t_size),
        conv1_t_stride=int(conv1_t_stride), no_max_pool=bool(no_max_pool),
        shortcut_type=str(shortcut_type))


@register_model("resnet10")
def resnet10(in_shape: Shape, widen_factor: float = 1.0, conv1_t_size: int = 7,
             conv1_t_stride: int = 2, no_max_pool: bool = False,
             shortcut_type: str = "B") -> torch.nn.Module:
    """MONAI ResNet-10 (basic blocks 1-1-1-1, widths 64..512 x widen_factor)."""
    return _resnet("resnet10", widen_factor, conv1_t_size, conv1_t_stride, no_max_pool,
                   shortcut_type)


@register_model("resnet18")
def resnet18(in_shape: Shape, widen_factor: float = 1.0, conv1_t_size: int = 7,
             conv1_t_stride: int = 2, no_max_pool: bool = False,
             shortcut_type: str = "B") -> torch.nn.Module:
    """MONAI ResNet-18 (basic blocks 2-2-2-2, widths 64..512 x widen_factor)."""
    return _resnet("resnet18", widen_factor, conv1_t_size, conv1_t_stride, no_max_pool,
                   shortcut_type)


@register_model("cnn-small")
def cnn_small(in_shape: Shape, channels: Sequence[int] = (8, 16, 32, 64),
              strides: Sequence[int] = (2, 2, 2, 2), num_res_units: int = 1,
              dropout: float = 0.0) -> torch.nn.Module:
    """MONAI Classifier: strided residual conv units, then a linear layer on the last map."""
    from monai.networks.nets import Classifier

    return Classifier(in_shape=(1, *in_shape), classes=NUM_CLASSES,
                      channels=tuple(int(c) for c in channels),
                      strides=tuple(int(s) for s in strides), num_res_units=int(num_res_units),
                      dropout=float(dropout) or None)


def _median3(v: torch.Tensor) -> torch.Tensor:
    """Separable 3x3x3 median of a (B, 1, X, Y, Z) volume: a median of 3 along each axis.

    It keeps step edges where they are and cuts the noise of flat regions to about a third
    (each pass leaves ~0.67 of it); border voxels repeat their neighbour.
    """
    for axis in (2, 3, 4):
        n = v.shape[axis]
        if n < 3:
            continue
        padded = torch.cat([v.narrow(axis, 0, 1), v, v.narrow(axis, n - 1, 1)], axis)
        a, b, c = (padded.narrow(axis, k, n) for k in range(3))
        v = torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))
    return v


def _exporting() -> bool:
    """Whether an ONNX export is tracing the network (without importing `torch.onnx`,
    about 0.3 s of a run's start-up: not yet imported, no export is under way)."""
    onnx = sys.modules.get("torch.onnx")
    return onnx is not None and bool(onnx.is_in_onnx_export())


@functools.lru_cache(maxsize=32)
def _inverse_counts(shape: tuple[int, ...], size: tuple[int, ...], dtype: torch.dtype,
                    device: torch.device) -> torch.Tensor:
    """1 / (the number of in-grid voxels in a centred box of `size` at each voxel of a grid
    of `shape`), shaped (1, 1, X, Y, Z) to scale a box sum; the counts factorize per axis.
    Made outside inference mode, so a training step may use what a scoring pass cached."""
    with torch.inference_mode(False):
        out = torch.ones((1, 1, 1, 1, 1), dtype=dtype, device=device)
        for axis, (n, k) in enumerate(zip(shape, size, strict=True)):
            at = torch.arange(n, device=device)
            count = torch.clamp(at + k // 2 + 1, max=n) - torch.clamp(at - k // 2, min=0)
            view = [1] * 5
            view[axis + 2] = n
            out = out * count.to(dtype).view(view)
        return out.reciprocal_()


def _box_mean(v: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Mean of `v` (B, C, X, Y, Z) over a centred box of `size` voxels (odd), taken over the
    voxels inside the grid only (a border voxel averages fewer).

    Separable: per axis, the volume plus its neighbours along the axis (shifted slices
    added in place); the sum is scaled once by the in-grid counts (cached per grid). The
    same values as ``avg_pool3d(..., stride=1, count_include_pad=False)`` at about a quarter
    of its CPU time in torch; an ONNX export takes the pooling, which ONNX Runtime runs
    faster than the slices.
    """
    from torch.nn import functional as F

    if _exporting():
        for axis, k in enumerate(size):
            if k > 1:
                kernel = [1, 1, 1]
                kernel[axis] = k
                v = F.avg_pool3d(v, tuple(kernel), stride=1,
                                 padding=tuple(s // 2 for s in kernel),
                                 count_include_pad=False)
        return v
    if all(k == 1 for k in size):
        return v.clone()
    for axis, k in enumerate(size):
        if k == 1:
            continue
        dim, n = axis + 2, v.shape[axis + 2]
        total = v.clone()
        for shift in range(1, min(k // 2, n - 1) + 1):  # the neighbours at +shift and -shift
            total.narrow(dim, 0, n - shift).add_(v.narrow(dim, shift, n - shift))
            total.narrow(dim, shift, n - shift).add_(v.narrow(dim, 0, n - shift))
        v = total
    return v.mul_(_inverse_counts(tuple(v.shape[2:]), tuple(size), v.dtype, v.device))


def _block_mean(v: torch.Tensor, factors: Sequence[int]) -> torch.Tensor:
    """Mean of `v` (B, C, X, Y, Z) over non-overlapping blocks of `factors` voxels, a
    trailing remainder dropped: ``avg_pool3d(v, factors)``, as strided slices added per
    axis (about half its CPU time in torch on the pipeline's grids; an ONNX export takes
    the pooling)."""
    from torch.nn import functional as F

    if _exporting():
        return F.avg_pool3d(v, tuple(factors))
    if all(f == 1 for f in factors):
        return v.clone()
    for axis, f in enumerate(factors):
        if f == 1:
            continue
        dim, n = axis + 2, v.shape[axis + 2] // f
        index: list[slice] = [slice(None)] * v.dim()
        parts = []
        for k in range(f):
            index[dim] = slice(k, n * f, f)
            parts.append(v[tuple(index)])
        total = parts[0] + parts[1]
        for part in parts[2:]:
            total += part
        v = total
    return v.mul_(1.0 / math.prod(factors))


class _BlobNet(torch.nn.Module):
    """Fully convolutional lesion-evidence map, pooled over space into one logit."""

    def __init__(self, channels: Sequence[int], strides: Sequence[int], pool: str,
                 lse_r: float, dropout: float, context: Sequence[int] | None,
                 kernel: int = 3, downsample: Sequence[int] = (1, 1, 1),
                 contrast_prior: float = 0.0, contrast_eps: float = 0.02,
                 tissue_floor: float | None = None, tissue_mask: str = "voxel") -> None:
        """`pool`: lse / max / mean of a one-channel evidence map, or ``maxavg``: global max
        and mean of every feature channel, then a linear layer. `contrast_prior` (> 0, needs
        `context`): the evidence map starts as that weight times the local darkness contrast
        (see `contrast`) and the learned layers add corrections to it. `tissue_floor`
        (needs `context`): the context statistics leave out voxels at or below it (fat,
        air), judged per voxel or on a 3x3x3 median (`tissue_mask`), see `_front`."""
        from torch import nn

        super().__init__()
        layers: list[nn.Module] = []
        self.context = tuple(context) if context else None
        self.pointwise = kernel == 1
        self.downsample = tuple(downsample)
        c_in = 4 if self.context else 1
        for c_out, stride in zip(channels, strides, strict=True):
            layers += [nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=kernel // 2,
                                 bias=False),
                       nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        if dropout:
            layers.append(nn.Dropout3d(dropout))
        self.pool, self.lse_r = pool, lse_r
        if pool == "maxavg":
            self.head = nn.Linear(2 * c_in, NUM_CLASSES)
        else:
            layers.append(nn.Conv3d(c_in, 1, 1))
        self.features = nn.Sequential(*layers)
        self.contrast_eps = float(contrast_eps)
        if tissue_floor is not None and not self.context:
            raise ValueError("blob-fcn: tissue_floor needs a context")
        if tissue_floor is not None and not 0.0 <= tissue_floor < 1.0:
            raise ValueError(f"blob-fcn: tissue_floor must lie in [0, 1) (normalized "
                             f"intensity), got {tissue_floor}: at or above 1 every voxel "
                             "would be left out of the context")
        self.tissue_floor = None if tissue_floor is None else float(tissue_floor)
        if tissue_mask not in ("voxel", "median"):
            raise ValueError(f"blob-fcn: tissue_mask {tissue_mask!r}: expected voxel or "
                             "median")
        self.tissue_mask = tissue_mask
        self.prior: nn.Parameter | None = None
        if contrast_prior:
            if not self.context or pool == "maxavg":
                raise ValueError("blob-fcn: contrast_prior needs a context and a one-channel "
                                 "evidence map (pool lse, max or mean)")
            # Start from the fixed detector: the learned layers contribute nothing at first
            # (last 1x1x1 conv zeroed) and learn which dark spots are not lesions.
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
            self.prior = nn.Parameter(torch.tensor([float(contrast_prior), 0.0]))

    def _pooled(self, v: torch.Tensor) -> torch.Tensor:
        # Average-pool (not strided sampling): cheaper layers, nothing skipped.
        return _block_mean(v, self.downsample) if any(d > 1 for d in self.downsample) else v

    def _front(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input channels and the darkness contrast, both at the evidence map's grid.

        Channels (with `context`): the 3x3x3 local mean, the `context` mean minus it, the
        `context` standard deviation and the volume minus the local mean, centred and scaled
        so the small differences a lesion makes are not a tiny direction inside three nearly
        equal intensity channels. Contrast: (context mean - local mean) / (context sd + eps),
        a difference-of-boxes blob detector (a small blob darker than homogeneous tissue
        around it scores high; edges and textured tissue do not).

        With `tissue_floor`, the context mean and standard deviation are taken over the
        voxels above the floor only, and the contrast is zero where the 3x3x3 box itself
        reaches below it. Without it, a lesion next to an organ's edge has fat in its
        context: the context's standard deviation swells and its contrast vanishes (the
        lowest-scoring positives of the triage benchmark were such lesions; the masked
        detector alone ranks them among the positives, docs/training.md).

        With ``tissue_mask: median`` a voxel counts as above the floor when its separable
        3x3x3 median does (`_median3`): noise then moves few tissue voxels across the floor,
        where a per-voxel mask drops noisy tissue and zeroes the contrast of every box that
        holds one such voxel; unlike a mean, the median keeps a tissue-fat edge where it is
        instead of smearing fat into tissue.
        """
        assert self.context is not None
        local = _box_mean(x, (3, 3, 3))
        if self.tissue_floor is None:
            mean = _box_mean(x, self.context)
            sd = _box_mean(x * x, self.context).sub_(mean * mean).clamp_min_(0).add_(1e-6).sqrt_()
        else:
            level = _median3(x) if self.tissue_mask == "median" else x
            tissue = (level > self.tissue_floor).to(x.dtype)
            share = _box_mean(tissue, self.context).clamp_min_(1e-3)
            mean = _box_mean(x * tissue, self.context).div_(share)
            sd = (_box_mean(x * x * tissue, self.context).div_(share).sub_(mean * mean)
                  .clamp_min_(0).add_(1e-6).sqrt_())
        contrast = (mean - local).div_(sd + self.contrast_eps)
        if self.tissue_floor is not None:
            contrast = contrast * (_box_mean(tissue, (3, 3, 3)) > 0.999).to(x.dtype)
        # Pooled first, then combined: the channels are affine in the pooled statistics
        # (average pooling is linear), and the combining runs on 1/8 of the voxels. Each
        # statistic is pooled on its own: concatenating the full-grid ones first costs a copy.
        local, mean, sd, x, contrast = (self._pooled(t) for t in (local, mean, sd, x, contrast))
        channels = torch.cat([(local - 0.5) * 4, (mean - local) * 10, sd * 10,
                              (x - local) * 10], 1)
        return channels, contrast

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The learned layers' input: the (pooled) volume, or the local-contrast channels."""
        return self._front(x)[0] if self.context else self._pooled(x)

    def _layers(self, v: torch.Tensor) -> torch.Tensor:
        # With 1x1x1 convolutions the learned layers are per-location: in channels-last
        # memory each convolution is one matrix product over the locations, about half the
        # CPU time of the default layout, forward and backward. (3x3x3 convolutions gain
        # nothing in inference, and the 70 %-pruned ones lose; ONNX has no memory formats:
        # an exported graph leaves the layout to its runtime.)
        if self.pointwise and not _exporting():
            v = v.contiguous(memory_format=torch.channels_last_3d)
        return self.features(v)

    def evidence(self, x: torch.Tensor) -> torch.Tensor:
        """The per-location lesion evidence map ``(B, 1, x', y', z')``."""
        if self.prior is None:
            return self._layers(self.inputs(x))
        channels, contrast = self._front(x)
        return self._layers(channels) + self.prior[0] * contrast + self.prior[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == "maxavg":
            f = self._layers(self.inputs(x)).flatten(2)
            return self.head(torch.cat([f.amax(2), f.mean(2)], 1))
        e = self.evidence(x).flatten(1)
        if self.pool == "max":
            z = e.amax(1)
        elif self.pool == "lse":
            r = self.lse_r
            z = (torch.logsumexp(r * e, 1) - torch.log(torch.tensor(float(e.shape[1])))) / r
        else:
            z = e.mean(1)
        return torch.stack([-z / 2, z / 2], 1)


@register_model("blob-fcn")
def blob_fcn(in_shape: Shape, channels: Sequence[int] = (16, 16, 32, 32, 64),
             strides: Sequence[int] = (1, 2, 1, 2, 1), pool: str = "lse", lse_r: float = 5.0,
             dropout: float = 0.0, context: Sequence[int] | None = (9, 9, 5), kernel: int = 3,
             downsample: Sequence[int] = (1, 1, 1), contrast_prior: float = 0.0,
             contrast_eps: float = 0.02, tissue_floor: float | None = None,
             tissue_mask: str = "voxel") -> torch.nn.Module:
    """Small fully convolutional net, one evidence map pooled over space (lse/max/mean):
    suits "is there a small dark blob anywhere"; ~90 k parameters at the defaults.

    `contrast_prior` > 0 starts the evidence map from a fixed darkness-contrast detector
    (weight and offset learned) and the learned layers from zero, so training refines a
    detector instead of having to find the lesion among ~10^5 voxels by chance (without it,
    whether training leaves the constant prediction depends on the seed: docs/training.md).
    `contrast_eps` is in normalized intensity units (0.02 = 10 HU for a 500 HU CT window).
    `tissue_floor` (normalized intensity, e.g. 0.25 = -75 HU on the [-200, 300] window)
    leaves fat and air out of the context statistics, so that lesions next to an organ's
    edge keep their contrast; `tissue_mask` says whether a voxel's own value (``voxel``)
    or its separable 3x3x3 median (``median``: steadier under noise, edges kept) is
    compared with the floor.
    """
    if pool not in ("lse", "max", "mean", "maxavg"):
        raise ValueError(f"blob-fcn pool {pool!r}: expected lse, max, mean or maxavg")
    if len(channels) != len(strides) or not channels:
        raise ValueError("blob-fcn: channels and strides must be non-empty, same length")
    return _BlobNet([int(c) for c in channels], [int(s) for s in strides], str(pool),
                    float(lse_r), float(dropout),
                    [int(k) | 1 for k in context] if context else None, int(kernel) | 1,
                    [int(d) for d in downsample], float(contrast_prior), float(contrast_eps),
                    None if tissue_floor is None else float(tissue_floor), str(tissue_mask))
