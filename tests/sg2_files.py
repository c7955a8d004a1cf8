"""StyleGAN2 files written the way each format's own code writes them, with deterministic weights
and without that code (or glean_sr) being needed.

* rosinality: ``torch.save`` of ``train.py``'s checkpoint dict (incl. ``argparse.Namespace``,
  optimizer states) or ``convert_weight.py``'s ``{"g_ema", "latent_avg"}``, keys and shapes of
  ``model.py``'s ``Generator`` / ``Discriminator``;
* mmagic 1.x: the mmengine runner's checkpoint dict (``generator_ema.module.*``,
  ``generator_ema.steps``, a ``message_hub`` with ``mmengine...HistoryBuffer`` objects holding
  numpy arrays, ``torch.save`` with pickle protocol 2); mmgeneration 0.x / released files:
  ``{"state_dict": {generator.*, generator_ema.*, discriminator.*}}``;
* NVIDIA: ``pickle.dump`` of a training snapshot, networks as
  ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with the module ``__dict__`` as
  ``meta['state']``, ``dnnlib.util.EasyDict`` init kwargs, numpy float64 gains as
  ``numpy.core.multiarray.scalar``, and tensors pickled by torch itself (storages as nested
  legacy ``torch.storage._load_from_bytes`` blobs). The GLOBALs are emitted by name, so neither
  ``torch_utils`` nor ``dnnlib`` has to exist.
"""

from __future__ import annotations

import argparse
import io
import math
import pickle
import sys
import types
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from sg2_reference import fir


def channels(multiplier: int | dict[int, int] = 2) -> dict[int, int]:
    """StyleGAN2 widths per resolution: config-f's literal table (every format's) times a channel
    multiplier from 64 px up, or, where ``multiplier`` is a dict, that explicit table. Every
    writer below takes either as its ``multiplier``."""
    if isinstance(multiplier, dict):
        return dict(multiplier)
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return {r: c if r <= 32 else c * multiplier for r, c in base.items()}


class Det:
    """Deterministic tensors from one seeded generator."""

    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def randn(self, *shape: int, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
        return torch.randn(shape, generator=self.g) * scale + offset


def nvidia_widths(channel_base: int, channel_max: int, size: int) -> dict[int, int]:
    """stylegan2-ada-pytorch's ``channels_dict``: ``min(channel_base // res, channel_max)``."""
    return {
        2**k: min(channel_base // 2**k, channel_max) for k in range(2, int(math.log2(size)) + 1)
    }


def _nvidia_rule(multiplier, rule) -> tuple[int, int]:
    """The ``(channel_base, channel_max)`` a snapshot records: ``rule`` if given, else the one
    of the config-f multiplier (``train.py --cbase 16384 * m --cmax 512``)."""
    if rule is not None:
        return rule
    assert isinstance(multiplier, int), "an explicit width table needs its NVIDIA rule"
    return 16384 * multiplier, 512


def _res_list(size: int) -> list[int]:
    return [2**k for k in range(3, int(math.log2(size)) + 1)]


# -- rosinality ------------------------------------------------------------------------------------


def rosinality_generator(size, style_dim, n_mlp, multiplier=2, seed=0, lr_mlp=0.01) -> OrderedDict:
    r, ch, sd = Det(seed), channels(multiplier), OrderedDict()
    for i in range(1, n_mlp + 1):
        sd[f"style.{i}.weight"] = r.randn(style_dim, style_dim, scale=1 / lr_mlp)
        sd[f"style.{i}.bias"] = r.randn(style_dim, scale=0.1)
    sd["input.input"] = r.randn(1, ch[4], 4, 4)

    def styled(p, cin, cout, up):
        sd[f"{p}.conv.weight"] = r.randn(1, cout, cin, 3, 3)
        if up:
            sd[f"{p}.conv.blur.kernel"] = fir(4.0)
        sd[f"{p}.conv.modulation.weight"] = r.randn(cin, style_dim)
        sd[f"{p}.conv.modulation.bias"] = r.randn(cin, scale=0.1, offset=1.0)
        sd[f"{p}.noise.weight"] = r.randn(1, scale=0.2)
        sd[f"{p}.activate.bias"] = r.randn(cout, scale=0.1)

    def to_rgb(p, cin, up):
        sd[f"{p}.bias"] = r.randn(1, 3, 1, 1, scale=0.1)
        if up:
            sd[f"{p}.upsample.kernel"] = fir(4.0)
        sd[f"{p}.conv.weight"] = r.randn(1, 3, cin, 1, 1)
        sd[f"{p}.conv.modulation.weight"] = r.randn(cin, style_dim)
        sd[f"{p}.conv.modulation.bias"] = r.randn(cin, scale=0.1, offset=1.0)

    styled("conv1", ch[4], ch[4], False)
    to_rgb("to_rgb1", ch[4], False)
    cin = ch[4]
    for b, res in enumerate(_res_list(size)):
        styled(f"convs.{2 * b}", cin, ch[res], True)
        styled(f"convs.{2 * b + 1}", ch[res], ch[res], False)
        cin = ch[res]
    for b, res in enumerate(_res_list(size)):
        to_rgb(f"to_rgbs.{b}", ch[res], True)
    for i in range(2 * int(math.log2(size)) - 3):
        res = 2 ** ((i + 5) // 2)
        sd[f"noises.noise_{i}"] = r.randn(1, 1, res, res)
    return sd


def styled_discriminator_dict(size, multiplier=2, seed=1, weight="weight", linear="weight"):
    """rosinality ``Discriminator`` (``weight="weight"``) or mmagic (``"conv.weight_orig"``)."""
    r, ch, sd = Det(seed), channels(multiplier), OrderedDict()
    sd[f"convs.0.0.{weight}"] = r.randn(ch[size], 3, 1, 1)
    sd["convs.0.1.bias"] = r.randn(ch[size], scale=0.1)
    res, k = size, 1
    while res >= 8:
        cin, cout = ch[res], ch[res // 2]
        sd[f"convs.{k}.conv1.0.{weight}"] = r.randn(cin, cin, 3, 3)
        sd[f"convs.{k}.conv1.1.bias"] = r.randn(cin, scale=0.1)
        sd[f"convs.{k}.conv2.0.kernel"] = fir()
        sd[f"convs.{k}.conv2.1.{weight}"] = r.randn(cout, cin, 3, 3)
        sd[f"convs.{k}.conv2.2.bias"] = r.randn(cout, scale=0.1)
        sd[f"convs.{k}.skip.0.kernel"] = fir()
        sd[f"convs.{k}.skip.1.{weight}"] = r.randn(cout, cin, 1, 1)
        res, k = res // 2, k + 1
    sd[f"final_conv.0.{weight}"] = r.randn(ch[4], ch[4] + 1, 3, 3)
    sd["final_conv.1.bias"] = r.randn(ch[4], scale=0.1)
    sd[f"final_linear.0.{linear}"] = r.randn(ch[4], ch[4] * 16)
    sd["final_linear.0.bias"] = r.randn(ch[4], scale=0.1)
    sd[f"final_linear.1.{linear}"] = r.randn(1, ch[4])
    sd["final_linear.1.bias"] = r.randn(1, scale=0.1)
    return sd


def _adam_state(num_params: int) -> dict:
    params = [torch.nn.Parameter(torch.ones(3)) for _ in range(num_params)]
    opt = torch.optim.Adam(params, lr=0.002, betas=(0.0, 0.99))
    sum(p.sum() for p in params).backward()
    opt.step()
    return opt.state_dict()


def write_rosinality_train_checkpoint(path: Path, *, size, style_dim, n_mlp) -> dict:
    """``train.py``: ``torch.save({"g", "d", "g_ema", "g_optim", "d_optim", "args", ...})``."""
    g_ema = rosinality_generator(size, style_dim, n_mlp, seed=10)
    g = rosinality_generator(size, style_dim, n_mlp, seed=11)
    d = styled_discriminator_dict(size, seed=12)
    args = argparse.Namespace(
        path="lmdb", arch="stylegan2", iter=800000, batch=16, n_sample=64, size=size, r1=10,
        path_regularize=2, path_batch_shrink=2, d_reg_every=16, g_reg_every=4, mixing=0.9,
        ckpt=None, lr=0.002, channel_multiplier=2, wandb=False, local_rank=0, augment=False,
        augment_p=0, ada_target=0.6, ada_length=500000, ada_every=256, latent=style_dim,
        n_mlp=n_mlp, start_iter=0, distributed=False,
    )  # fmt: skip
    ckpt = {
        "g": g,
        "d": d,
        "g_ema": g_ema,
        "g_optim": _adam_state(2),
        "d_optim": _adam_state(2),
        "args": args,
        "ada_aug_p": 0.0,
    }
    torch.save(ckpt, path)
    return ckpt


# -- mmagic / mmgeneration -------------------------------------------------------------------------


def mmagic_generator(size, style_dim, n_mlp, multiplier=2, seed=0) -> OrderedDict:
    """The same numbers as :func:`rosinality_generator`, under mmagic's names."""
    renames = [
        ("style.", "style_mapping."),
        ("input.input", "constant_input.input"),
        (".conv.modulation.", ".conv.style_modulation."),
        (".noise.weight", ".noise_injector.weight"),
        ("noises.noise_", "injected_noise_"),
    ]
    out = OrderedDict()
    for key, value in rosinality_generator(size, style_dim, n_mlp, multiplier, seed).items():
        for a, b in renames:
            key = key.replace(a, b)
        if key.startswith("style_mapping.") or ".style_modulation." in key:
            key = key.replace(".weight", ".linear.weight_orig")
        elif key.endswith("conv.weight"):
            key = key[: -len("weight")] + "weight_orig"
        out[key] = value
    return out


def mmagic_discriminator(size, seed=1, multiplier=2) -> OrderedDict:
    return styled_discriminator_dict(
        size, multiplier, seed=seed, weight="conv.weight_orig", linear="linear.weight_orig"
    )


def _fake_modules(names: dict[str, dict]) -> None:
    for name, attrs in names.items():
        mod = types.ModuleType(name)
        for k, v in attrs.items():
            setattr(mod, k, v)
            if isinstance(v, type):
                v.__module__ = name
        sys.modules[name] = mod


@contextmanager
def stand_in_modules(names: dict[str, dict]):
    """Modules that exist only while a file is being written (so pickle can name them)."""
    before = {n: sys.modules.get(n) for n in names}
    _fake_modules(names)
    try:
        yield
    finally:
        for n, old in before.items():
            if old is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = old


class HistoryBuffer:
    """Stand-in for ``mmengine.logging.history_buffer.HistoryBuffer`` (same pickled state)."""

    def __init__(self, values):
        self.max_length = 1000000
        self._log_history = np.array(values, dtype=np.float64)
        self._count_history = np.ones(len(values), dtype=np.int64)


def write_mmagic1_checkpoint(path: Path, *, size, style_dim, n_mlp) -> dict:
    """mmengine ``Runner.save_checkpoint`` of an mmagic 1.x StyleGAN2 (EMA wrapper keys)."""
    sd = OrderedDict()
    for k, v in mmagic_generator(size, style_dim, n_mlp, seed=21).items():
        sd[f"generator.{k}"] = v
    for k, v in mmagic_generator(size, style_dim, n_mlp, seed=20).items():
        sd[f"generator_ema.module.{k}"] = v
    sd["generator_ema.steps"] = torch.tensor(1000)
    for k, v in mmagic_discriminator(size, seed=22).items():
        sd[f"discriminator.{k}"] = v
    with stand_in_modules(
        {
            "mmengine": {},
            "mmengine.logging": {},
            "mmengine.logging.history_buffer": {"HistoryBuffer": HistoryBuffer},
        }
    ):
        ckpt = {
            "meta": {
                "epoch": 0,
                "iter": 1000,
                "cfg": "model = dict(type='StyleGAN2', ...)",
                "seed": 2022,
                "experiment_name": "stylegan2_c2_8xb4",
                "time": "20240101_000000",
                "mmengine_version": "0.10.4",
                "dataset_meta": None,
            },
            "state_dict": sd,
            "message_hub": {
                "log_scalars": {
                    "train/loss_gen": HistoryBuffer([0.9, 0.8]),
                    "train/loss_disc": HistoryBuffer([1.2, 1.1]),
                },
                "runtime_info": {"epoch": 0, "iter": 1000, "max_iters": 800000},
                "resumed_keys": {"epoch": True, "iter": True},
            },
            "optimizer": {"generator": _adam_state(1), "discriminator": _adam_state(1)},
            "param_schedulers": [],
        }
        torch.save(ckpt, path)
    return ckpt


def write_mmgen_checkpoint(path: Path, *, size, style_dim, n_mlp, multiplier=2) -> dict:
    """mmgeneration 0.x / the released official weights: ``generator_ema.*``, no wrapper."""
    sd = OrderedDict()
    for prefix, seed in (("generator", 31), ("generator_ema", 30)):
        for k, v in mmagic_generator(size, style_dim, n_mlp, multiplier, seed=seed).items():
            sd[f"{prefix}.{k}"] = v
    for k, v in mmagic_discriminator(size, seed=32, multiplier=multiplier).items():
        sd[f"discriminator.{k}"] = v
    ckpt = {"meta": {"mmcv_version": "1.3.1", "iter": 0}, "state_dict": sd}
    torch.save(ckpt, path)
    return ckpt


# -- NVIDIA ----------------------------------------------------------------------------------------


def nvidia_generator_tensors(size, style_dim, n_mlp, multiplier=2, seed=0, lr=0.01) -> dict:
    """``G.state_dict()`` of stylegan2-ada-pytorch's ``Generator`` (names and shapes)."""
    r, ch, sd = Det(seed), channels(multiplier), {}
    for i in range(n_mlp):
        sd[f"mapping.fc{i}.weight"] = r.randn(style_dim, style_dim, scale=1 / lr)
        sd[f"mapping.fc{i}.bias"] = r.randn(style_dim, scale=0.1)
    sd["mapping.w_avg"] = r.randn(style_dim, scale=0.5)

    def layer(p, cin, cout, res):
        sd[f"{p}.weight"] = r.randn(cout, cin, 3, 3)
        sd[f"{p}.noise_strength"] = r.randn(scale=0.2)
        sd[f"{p}.bias"] = r.randn(cout, scale=0.1)
        sd[f"{p}.resample_filter"] = fir()
        sd[f"{p}.noise_const"] = r.randn(res, res)
        sd[f"{p}.affine.weight"] = r.randn(cin, style_dim)
        sd[f"{p}.affine.bias"] = r.randn(cin, scale=0.1, offset=1.0)

    def torgb(p, cin):
        sd[f"{p}.weight"] = r.randn(3, cin, 1, 1)
        sd[f"{p}.bias"] = r.randn(3, scale=0.1)
        sd[f"{p}.affine.weight"] = r.randn(cin, style_dim)
        sd[f"{p}.affine.bias"] = r.randn(cin, scale=0.1, offset=1.0)

    sd["synthesis.b4.const"] = r.randn(ch[4], 4, 4)
    layer("synthesis.b4.conv1", ch[4], ch[4], 4)
    torgb("synthesis.b4.torgb", ch[4])
    sd["synthesis.b4.resample_filter"] = fir()
    for res in _res_list(size):
        layer(f"synthesis.b{res}.conv0", ch[res // 2], ch[res], res)
        layer(f"synthesis.b{res}.conv1", ch[res], ch[res], res)
        torgb(f"synthesis.b{res}.torgb", ch[res])
        sd[f"synthesis.b{res}.resample_filter"] = fir()
    return sd


def nvidia_discriminator_tensors(size, multiplier=2, seed=1) -> dict:
    r, ch, sd = Det(seed), channels(multiplier), {}

    def conv(p, cin, cout, k, bias=True):
        sd[f"{p}.weight"] = r.randn(cout, cin, k, k)
        if bias:
            sd[f"{p}.bias"] = r.randn(cout, scale=0.1)
        sd[f"{p}.resample_filter"] = fir()

    res = size
    while res >= 8:
        b = f"b{res}"
        if res == size:
            conv(f"{b}.fromrgb", 3, ch[res], 1)
        conv(f"{b}.conv0", ch[res], ch[res], 3)
        conv(f"{b}.conv1", ch[res], ch[res // 2], 3)
        conv(f"{b}.skip", ch[res], ch[res // 2], 1, bias=False)
        sd[f"{b}.resample_filter"] = fir()
        res //= 2
    conv("b4.conv", ch[4] + 1, ch[4], 3)
    sd["b4.fc.weight"] = r.randn(ch[4], ch[4] * 16)
    sd["b4.fc.bias"] = r.randn(ch[4], scale=0.1)
    sd["b4.out.weight"] = r.randn(1, ch[4])
    sd["b4.out.bias"] = r.randn(1, scale=0.1)
    return sd


class EasyDict(dict):
    """Pickled as ``dnnlib.util.EasyDict``."""


class Persistent:
    """A ``torch_utils.persistence`` object: class name, module source, ``__dict__``."""

    def __init__(self, class_name: str, module_src: str, state: dict):
        self.class_name = class_name
        self.module_src = module_src
        self.state = state


class _Global:
    """Emits ``GLOBAL module name`` without the module having to exist."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):
        raise RuntimeError("never called")


class _SnapshotPickler(pickle._Pickler):
    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def _save_global_ref(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def _save_persistent(self, obj):
        meta = {
            "type": "class",
            "version": 6,
            "module_src": obj.module_src,
            "class_name": obj.class_name,
            "state": obj.state,
        }
        self.save_reduce(
            _Global("torch_utils.persistence", "_reconstruct_persistent_obj"), (meta,), obj=obj
        )

    def _save_easydict(self, obj):
        self.save(_Global("dnnlib.util", "EasyDict"))
        self.write(pickle.EMPTY_TUPLE + pickle.NEWOBJ)
        self.memoize(obj)
        self._batch_setitems(iter(obj.items()))

    def _save_np_scalar(self, obj):
        self.save_reduce(
            _Global("numpy.core.multiarray", "scalar"), (obj.dtype, obj.tobytes()), obj=obj
        )

    dispatch[_Global] = _save_global_ref
    dispatch[Persistent] = _save_persistent
    dispatch[EasyDict] = _save_easydict
    dispatch[np.float64] = _save_np_scalar


def _module_dict(params=None, buffers=None, modules=None, **attrs) -> dict:
    """``nn.Module.__dict__`` as a snapshot (``.eval().requires_grad_(False)``) pickles it."""
    fresh = torch.nn.Module().__dict__
    state = {k: (OrderedDict() if isinstance(v, dict) else v) for k, v in fresh.items()}
    state["training"] = False
    state["_non_persistent_buffers_set"] = set()
    state["_parameters"] = OrderedDict(
        (k, torch.nn.Parameter(v.clone(), requires_grad=False)) for k, v in (params or {}).items()
    )
    state["_buffers"] = OrderedDict((k, v.clone()) for k, v in (buffers or {}).items())
    state["_modules"] = OrderedDict(modules or {})
    state.update(attrs)
    return state


def _persistent_tree(tensors: dict, spec: dict, src: str) -> Persistent:
    """Build a network from ``spec`` = {path: (class, param names, buffer names, attrs)}."""
    nodes = {}
    for path in sorted(spec, key=lambda p: -p.count(".") if p else 1):
        cls, params, buffers, attrs = spec[path]
        prefix = f"{path}." if path else ""
        children = OrderedDict(
            (c.rsplit(".", 1)[-1], nodes[c])
            for c in spec
            if c and c != path and (c.rsplit(".", 1)[0] if "." in c else "") == path
        )
        state = _module_dict(
            {p: tensors[prefix + p] for p in params},
            {b: tensors[prefix + b] for b in buffers},
            children,
            **attrs,
        )
        nodes[path] = Persistent(cls, src, state)
    return nodes[""]


def _node(cls, params=(), buffers=(), args=(), attrs=None, **init_kwargs):
    """One module of the spec: class name, tensor names, attributes (incl. the init args)."""
    attrs = dict(attrs or {})
    attrs["_init_args"] = tuple(args)
    attrs["_init_kwargs"] = dict(init_kwargs)
    return (cls, list(params), list(buffers), attrs)


def _fc(cin, cout, lr_mul, act):
    gain = np.float64(lr_mul / np.sqrt(cin))
    attrs = {"activation": act, "weight_gain": gain, "bias_gain": lr_mul}
    return _node(
        "FullyConnectedLayer", ["weight", "bias"], (), (cin, cout), attrs,
        activation=act, lr_multiplier=lr_mul,
    )  # fmt: skip


def nvidia_generator_object(sd, size, style_dim, n_mlp, multiplier, src, conv_clamp=256, rule=None):
    """The ``Generator`` of ``training/networks.py`` as pickled: module tree and attributes.
    ``rule`` is the recorded ``(channel_base, channel_max)`` (see :func:`_nvidia_rule`)."""
    ch, s = channels(multiplier), style_dim
    channel_base, channel_max = _nvidia_rule(multiplier, rule)
    num_ws = 2 * int(math.log2(size)) - 2
    resolutions = [4, *_res_list(size)]
    fp16_from = max(2 ** (int(math.log2(size)) + 1 - 4), 8)  # num_fp16_res = 4

    def layer(cin, cout, res, up):
        attrs = {
            "resolution": res, "up": up, "use_noise": True, "activation": "lrelu",
            "conv_clamp": conv_clamp, "padding": 1, "act_gain": np.float64(np.sqrt(2)),
        }  # fmt: skip
        return _node(
            "SynthesisLayer", ["weight", "noise_strength", "bias"],
            ["resample_filter", "noise_const"], (cin, cout), attrs,
            w_dim=s, resolution=res, up=up, conv_clamp=conv_clamp,
        )  # fmt: skip

    g_kwargs = {
        "z_dim": s, "c_dim": 0, "w_dim": s, "img_resolution": size, "img_channels": 3,
        "mapping_kwargs": EasyDict(num_layers=n_mlp),
        "synthesis_kwargs": EasyDict(
            channel_base=channel_base, channel_max=channel_max, num_fp16_res=4,
            conv_clamp=conv_clamp,
        ),
    }  # fmt: skip
    spec = {
        "": _node(
            "Generator", attrs={"z_dim": s, "c_dim": 0, "w_dim": s, "img_resolution": size,
            "img_channels": 3, "num_ws": num_ws}, **g_kwargs,
        ),
        "mapping": _node(
            "MappingNetwork", (), ["w_avg"], (), {"z_dim": s, "c_dim": 0, "w_dim": s,
            "num_ws": num_ws, "num_layers": n_mlp, "w_avg_beta": 0.995},
            z_dim=s, c_dim=0, w_dim=s, num_ws=num_ws, num_layers=n_mlp,
        ),
        "synthesis": _node(
            "SynthesisNetwork", attrs={"w_dim": s, "img_resolution": size,
            "img_resolution_log2": int(math.log2(size)), "img_channels": 3,
            "block_resolutions": resolutions, "num_ws": num_ws},
            w_dim=s, img_resolution=size, img_channels=3, channel_base=channel_base,
            channel_max=channel_max,
        ),
    }  # fmt: skip
    for i in range(n_mlp):
        spec[f"mapping.fc{i}"] = _fc(s, s, 0.01, "lrelu")
    for res in resolutions:
        b = f"synthesis.b{res}"
        cin = 0 if res == 4 else ch[res // 2]
        attrs = {
            "in_channels": cin, "w_dim": s, "resolution": res, "img_channels": 3,
            "is_last": res == size, "architecture": "skip", "use_fp16": res >= fp16_from,
            "channels_last": False, "num_conv": 1 if res == 4 else 2, "num_torgb": 1,
        }  # fmt: skip
        params = ["const"] if res == 4 else []
        spec[b] = _node(
            "SynthesisBlock", params, ["resample_filter"], (cin, ch[res]), attrs,
            w_dim=s, resolution=res, img_channels=3, is_last=res == size,
            use_fp16=res >= fp16_from, conv_clamp=conv_clamp,
        )  # fmt: skip
        if res > 4:
            spec[f"{b}.conv0"] = layer(ch[res // 2], ch[res], res, 2)
            spec[f"{b}.conv0.affine"] = _fc(s, ch[res // 2], 1, "linear")
        spec[f"{b}.conv1"] = layer(ch[res], ch[res], res, 1)
        spec[f"{b}.conv1.affine"] = _fc(s, ch[res], 1, "linear")
        torgb = {"conv_clamp": conv_clamp, "weight_gain": np.float64(1 / np.sqrt(ch[res]))}
        spec[f"{b}.torgb"] = _node(
            "ToRGBLayer", ["weight", "bias"], (), (ch[res], 3), torgb,
            w_dim=s, conv_clamp=conv_clamp,
        )  # fmt: skip
        spec[f"{b}.torgb.affine"] = _fc(s, ch[res], 1, "linear")
    return _persistent_tree(sd, spec, src)


def nvidia_discriminator_object(sd, size, multiplier, src, group_size=4, rule=None):
    """The ``Discriminator`` of ``training/networks.py`` (resnet) as pickled."""
    ch = channels(multiplier)
    channel_base, channel_max = _nvidia_rule(multiplier, rule)

    def conv(cin, cout, k, act, bias=True, down=1):
        attrs = {
            "activation": act, "up": 1, "down": down, "conv_clamp": 256, "padding": k // 2,
            "weight_gain": np.float64(1 / np.sqrt(cin * k * k)),
            "act_gain": np.float64(np.sqrt(2)) if act == "lrelu" else 1,
        }  # fmt: skip
        params = ["weight", "bias"] if bias else ["weight"]
        return _node(
            "Conv2dLayer", params, ["resample_filter"], (cin, cout), attrs,
            kernel_size=k, activation=act, down=down,
        )  # fmt: skip

    blocks = [2**k for k in range(int(math.log2(size)), 2, -1)]
    spec = {
        "": _node(
            "Discriminator", attrs={"c_dim": 0, "img_resolution": size,
            "img_resolution_log2": int(math.log2(size)), "img_channels": 3,
            "block_resolutions": blocks},
            c_dim=0, img_resolution=size, img_channels=3, architecture="resnet",
            channel_base=channel_base, channel_max=channel_max, num_fp16_res=4, conv_clamp=256,
            epilogue_kwargs=EasyDict(mbstd_group_size=group_size),
        ),
    }  # fmt: skip
    first_layer = 0
    for res in blocks:
        b = f"b{res}"
        cin = 0 if res == size else ch[res]
        num_layers = 4 if res == size else 3
        attrs = {
            "in_channels": cin, "resolution": res, "img_channels": 3,
            "first_layer_idx": first_layer, "architecture": "resnet", "use_fp16": True,
            "channels_last": False, "num_layers": num_layers,
        }  # fmt: skip
        spec[b] = _node(
            "DiscriminatorBlock", (), ["resample_filter"], (cin, ch[res], ch[res // 2]), attrs,
            resolution=res, img_channels=3, first_layer_idx=first_layer,
        )  # fmt: skip
        if res == size:
            spec[f"{b}.fromrgb"] = conv(3, ch[res], 1, "lrelu")
        spec[f"{b}.conv0"] = conv(ch[res], ch[res], 3, "lrelu")
        spec[f"{b}.conv1"] = conv(ch[res], ch[res // 2], 3, "lrelu", down=2)
        spec[f"{b}.skip"] = conv(ch[res], ch[res // 2], 1, "linear", bias=False, down=2)
        first_layer += num_layers
    epilogue = {
        "in_channels": ch[4], "cmap_dim": 0, "resolution": 4, "img_channels": 3,
        "architecture": "resnet",
    }  # fmt: skip
    spec["b4"] = _node("DiscriminatorEpilogue", (), (), (ch[4],), epilogue, cmap_dim=0)
    mbstd = {"group_size": group_size, "num_channels": 1}
    spec["b4.mbstd"] = _node("MinibatchStdLayer", attrs=mbstd, **mbstd)
    spec["b4.conv"] = conv(ch[4] + 1, ch[4], 3, "lrelu")
    spec["b4.fc"] = _fc(ch[4] * 16, ch[4], 1, "lrelu")
    spec["b4.out"] = _fc(ch[4], 1, 1, "linear")
    return _persistent_tree(sd, spec, src)


def write_nvidia_snapshot(path: Path, snapshot: dict, protocol: int = 3) -> None:
    """``pickle.dump(snapshot_data, f)`` as ``training_loop.py`` does, without NVIDIA's code."""
    buffer = io.BytesIO()
    _SnapshotPickler(buffer, protocol=protocol).dump(snapshot)
    path.write_bytes(buffer.getvalue())


def augment_pipe_object(src: str) -> Persistent:
    kwargs = {"xflip": 1, "rotate90": 1, "xint": 1, "scale": 1, "brightness": 1}
    buffers = {"p": torch.tensor(0.1), "Hz_geom": torch.zeros(12)}
    state = _module_dict(buffers=buffers, **kwargs, _init_args=(), _init_kwargs=kwargs)
    return Persistent("AugmentPipe", src, state)
