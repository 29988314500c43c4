"""Train an SR network on 2D slices of CT/MR volumes, or on pictures: ``python -m rmisr_monai.training --help``.

Every shipped model's last training stage is a recipe (a JSON file of these options, its registry entry's
``recipe``; :mod:`rmisr_monai.training.recipe`); options after it override the recipe's::

    python -m rmisr_monai.training --recipe benchmarks/recipes/rmisr_bl64_x4.json \\
        --seed 10 --checkpoint-dir runs/bl64_x4s9 --output runs/rmisr_bl64_x4s9.pt

A run from options alone::

    python -m rmisr_monai.training --network rmisr_bl --scale 2 --modality CT \\
        --volumes ../shared/data/medical/ct/totalseg_chest_cta_crop_1p5mm.nii.gz ... \\
        --iterations 2000 --patch 32 --batch 16 --checkpoint-dir runs/ct_x2 --output rmisr_bl_ct_x2.pt

RMISR Table 1's protocol on natural RGB pictures (T91 + BSD200; evaluate with benchmarks/natural.py)::

    python -m rmisr_monai.training --network rmisr_bl --network-kwargs '{"in_channels": 3}' --scale 4 \\
        --images ../shared/data/natural_train/T91 ../shared/data/natural_train/BSD200 \\
        --patch 48 --checkpoint-dir runs/natural_x4 --output rmisr_bl_natural_x4.pt
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch
from monai.engines.utils import default_prepare_batch

from rmisr_monai.networks import get_network
from rmisr_monai.training.data import PrepareScaledBatch, image_patch_loader, random_scale_loader, slice_patch_loader
from rmisr_monai.training.datasets import picture_files
from rmisr_monai.training.recipe import default_shared, load_recipe, recipe_arguments
from rmisr_monai.training.trainer import INITIAL_LR, ITERATIONS_PER_EPOCH, build_trainer, sr_loss
from rmisr_monai.weights.loader import load_model, save_checkpoint


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` shows the default of every option that has one and keeps the example's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The training command's options; a recipe holds them by ``dest`` (:mod:`rmisr_monai.training.recipe`)."""
    parser = argparse.ArgumentParser(
        prog="python -m rmisr_monai.training",
        description="Train an SR network on random paired patches of volume slices or of pictures "
        "(LR = MATLAB bicubic of HR).",
        formatter_class=_HelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument(
        "--recipe", type=Path, default=None, metavar="FILE",
        help="a JSON training recipe (benchmarks/recipes/*.json): its options come first, so the ones given here "
        "override them",
    )
    parser.add_argument(
        "--shared", type=Path, default=default_shared(), metavar="DIR",
        help="the shared data folder the recipe's volumes, images and pictures are relative to ($RMISR_SHARED, else "
        "../shared)",
    )
    parser.add_argument("--network", default="rmisr_bl", help="a name of rmisr_monai.networks.get_network")
    parser.add_argument("--network-kwargs", default="{}", help='JSON constructor arguments, e.g. \'{"features": 32}\'')
    parser.add_argument("--scale", type=int, default=2, help="integer SR factor of the sub-pixel network")
    parser.add_argument(
        "--scale-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
        help="train an arbitrary-scale network (network kwargs with \"upsampler\": \"meta\") on a random scale "
        "pair per batch in [LOW, HIGH] (Meta-SR: 1.1 4.0), one axis alone or both",
    )
    parser.add_argument(
        "--modality", choices=["CT", "MR"], default=None, help="picks the intensity normalisation (with --volumes)"
    )
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--volumes", nargs="+", help="NIfTI/NRRD/MHA files or DICOM series folders")
    data.add_argument(
        "--images", nargs="+",
        help="8-bit pictures (PNG/BMP/JPEG/TIFF) or folders of them, 0-255 mapped to [0, 1]; RGB for a network "
        'with "in_channels": 3, else gray (BT.601 luma)',
    )
    parser.add_argument(
        "--pictures", nargs="+", default=None,
        help="with --volumes and --modality MR: grey 8-bit pictures (or folders of them, e.g. the T91 + BSD200 of "
        "../shared/data/natural_train) mixed into the slices, each normalised by its own percentiles",
    )
    parser.add_argument(
        "--pictures-share", type=float, default=0.25, help="expected share of the patches drawn from --pictures"
    )
    parser.add_argument("--axes", type=int, nargs="+", default=[2], help="slice axes of the volumes (2 = axial)")
    parser.add_argument(
        "--iterations", type=int, default=2000,
        help="optimiser steps, run exactly (in all when resuming); the learning rate halves every quarter of them "
        "unless --halve-every says otherwise",
    )
    parser.add_argument(
        "--halve-every", type=int, default=None, metavar="N",
        help="halve the learning rate every N iterations (default: a quarter of --iterations)",
    )
    parser.add_argument(
        "--epoch-length", type=int, default=ITERATIONS_PER_EPOCH, help="iterations per epoch (keep it when resuming)"
    )
    parser.add_argument("--patch", type=int, default=32, help="LR patch size (HR = patch x scale)")
    parser.add_argument("--batch", type=int, default=16, help="patches per optimiser step")
    parser.add_argument(
        "--loss-kwargs", default="{}",
        help='JSON arguments of the network\'s loss (rmisr_monai.training.trainer.sr_loss), e.g. for rmisr_vp '
        '\'{"contextual": {"max_positions": 1024}}\' (random positions of the contextual loss per map)',
    )
    parser.add_argument("--lr", type=float, default=INITIAL_LR, help="initial Adam learning rate (RMISR §5.1)")
    parser.add_argument(
        "--ct-window", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
        help="CT only: the HU window mapped to [0, 1], recorded in the checkpoint (default -1024 3071; "
        "-3072 3071 also spans the padding values scanners write outside the field of view, -2048 / -3024)",
    )
    parser.add_argument("--noise", type=float, default=0.0, help="max std of Gaussian noise added to LR ([0,1] units)")
    parser.add_argument(
        "--contrast-gamma", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
        help="with --volumes at one scale: a random gamma in [LOW, HIGH] on half the HR patches before the LR is "
        "made (MONAI RandAdjustContrastd): contrasts the training scans lack, e.g. 0.6 1.7",
    )
    parser.add_argument(
        "--fov-padding", type=float, nargs="+", default=(), metavar="HU",
        help="with --modality MR: also train on copies of every CT volume of a whole, unpadded field of view whose "
        "corners outside the reconstruction circle hold each of these padding values, as GE scanners write them "
        "(e.g. -3024 -2048): the circle's rim is the strongest edge of such scans",
    )
    parser.add_argument(
        "--fov-padding-share", type=float, default=None,
        help="with --fov-padding: the expected share of the patches drawn from the padded copies (default: as many "
        "as their slices)",
    )
    parser.add_argument(
        "--fov-rim-tiles", action=argparse.BooleanOptionalAction, default=False,
        help="with --fov-padding: give the padded copies as squares on the reconstruction circle's rim (up to 8 per "
        "slice, 5/4 of the HR patch wide) instead of whole slices, so that every patch drawn from them crosses the rim",
    )
    parser.add_argument(
        "--precision", choices=("auto", "fp32"), default="auto",
        help="auto: the forward pass in bfloat16 on CPUs with native bf16 (AMX or AVX512-BF16), float16 with gradient "
        "scaling on CUDA, fp32 elsewhere; fp32: the reference arithmetic everywhere",
    )
    parser.add_argument("--seed", type=int, default=0, help="random state of the weights, sampler and augmentation")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="training device")
    parser.add_argument("--log-every", type=int, default=50, help="iterations between loss log lines")
    parser.add_argument("--checkpoint-dir", type=Path, required=True, help="resumable trainer checkpoints go here")
    parser.add_argument(
        "--checkpoint-every", type=int, default=500, help="iterations between resumable checkpoints (and at the end)"
    )
    parser.add_argument("--resume", type=Path, default=None, help="a trainer checkpoint to continue from")
    parser.add_argument(
        "--init", default=None, metavar="MODEL",
        help="start from these weights (a model checkpoint or a shipped model name), fresh optimiser: fine-tuning",
    )
    parser.add_argument(
        "--transfer", default=None, metavar="MODEL",
        help="copy every tensor of MODEL (checkpoint or shipped name) whose name and shape fit, e.g. the body of an "
        "x2 model into an x3 or arbitrary-scale network; the rest starts fresh",
    )
    parser.add_argument("--output", type=Path, required=True, help="the model checkpoint to write (weights/ format)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` after the arguments of its ``--recipe``, if any; ``arguments`` is the whole list parsed.

    Raises:
        InputFileError: the recipe cannot be read or holds an unknown key or a value of the wrong kind.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    locate = argparse.ArgumentParser(add_help=False)
    locate.add_argument("--recipe", type=Path, default=None)
    locate.add_argument("--shared", type=Path, default=default_shared())
    where, _ = locate.parse_known_args(argv)
    arguments = argv
    if where.recipe is not None:
        arguments = [*recipe_arguments(load_recipe(where.recipe, parser), parser, where.shared), *argv]
    args = parser.parse_args(arguments)
    args.arguments = arguments
    if args.halve_every is not None and args.halve_every < 1:
        parser.error(f"--halve-every must be >= 1, not {args.halve_every}")
    if args.volumes is not None and args.modality is None:
        parser.error("--volumes needs --modality CT or MR")
    if args.images is not None and (args.modality, args.ct_window, args.scale_range) != (None, None, None):
        parser.error("--images trains at one --scale on 8-bit pictures: --modality, --ct-window and --scale-range "
                     "are for --volumes")
    if args.pictures is not None and (args.volumes is None or args.modality != "MR" or args.scale_range is not None):
        parser.error("--pictures mixes into --volumes at one --scale with --modality MR (per-volume percentiles)")
    if args.fov_padding and (args.volumes is None or args.modality != "MR"):
        parser.error("--fov-padding pads CT --volumes under --modality MR (per-volume percentiles: the padding moves "
                     "the HU floor a fixed window would clip)")
    if args.fov_padding_share is not None and (not args.fov_padding or args.scale_range is not None):
        parser.error("--fov-padding-share weighs the copies of --fov-padding at one --scale")
    if args.fov_rim_tiles and (not args.fov_padding or args.scale_range is not None):
        parser.error("--fov-rim-tiles cuts the copies of --fov-padding at one --scale")
    if args.contrast_gamma is not None and (args.volumes is None or args.scale_range is not None):
        parser.error("--contrast-gamma changes the contrast of --volumes patches at one --scale")
    return args


def transfer_weights(network: torch.nn.Module, model: str) -> None:
    """Copy the tensors of ``model`` whose name and shape fit ``network``; log how many were left fresh."""
    source, _ = load_model(model)
    own = network.state_dict()
    fitting = {k: v for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape}
    network.load_state_dict(fitting, strict=False)
    logging.getLogger(__name__).info(
        "--transfer %s: %d of %d tensors copied, %d start fresh", model, len(fitting), len(own), len(own) - len(fitting)
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    kwargs = {"in_channels": 1, "scale": args.scale, **json.loads(args.network_kwargs)}
    if args.init is None:
        network = get_network(args.network, **kwargs)
    else:
        network, meta = load_model(args.init)
        if (meta["network"], meta["network_kwargs"]) != (args.network, kwargs):
            raise SystemExit(
                f"--init {args.init}: holds {meta['network']} {json.dumps(meta['network_kwargs'])}, "
                f"not {args.network} {json.dumps(kwargs)}"
            )
        network.train()
    if args.transfer is not None:
        transfer_weights(network, args.transfer)
    network = network.to(args.device)
    prepare_batch = default_prepare_batch
    if args.images is not None:
        loader, intensity = image_patch_loader(
            picture_files(args.images), color="rgb" if kwargs["in_channels"] == 3 else "gray", scale=args.scale,
            patch=args.patch, batch=args.batch, samples=args.iterations * args.batch, noise=args.noise,
            seed=args.seed,
        )
    elif args.scale_range is None:
        loader, intensity = slice_patch_loader(
            args.volumes, args.modality, scale=args.scale, patch=args.patch, batch=args.batch,
            samples=args.iterations * args.batch, axes=args.axes, noise=args.noise, seed=args.seed,
            ct_window=args.ct_window, pictures=picture_files(args.pictures or []), pictures_share=args.pictures_share,
            fov_padding=args.fov_padding, fov_padding_share=args.fov_padding_share, fov_rim_tiles=args.fov_rim_tiles,
            contrast_gamma=args.contrast_gamma,
        )
    else:
        if not getattr(network, "arbitrary_scale", False):
            raise SystemExit(f"--scale-range needs an arbitrary-scale network, not {args.network} {kwargs}")
        loader, intensity = random_scale_loader(
            args.volumes, args.modality, patch=args.patch, batch=args.batch, batches=args.iterations,
            scale_range=args.scale_range, axes=args.axes, noise=args.noise, seed=args.seed,
            ct_window=args.ct_window, fov_padding=args.fov_padding,
        )
        prepare_batch = PrepareScaledBatch()
    loss = sr_loss(args.network, **json.loads(args.loss_kwargs))
    trainer = build_trainer(
        network, loader, loss, iterations=args.iterations, checkpoint_dir=args.checkpoint_dir, device=args.device,
        learning_rate=args.lr, halve_every=args.halve_every, resume_from=args.resume, epoch_length=args.epoch_length,
        prepare_batch=prepare_batch, checkpoint_every=args.checkpoint_every, log_every=args.log_every,
        amp=args.precision == "auto",
    )
    start = time.time()
    trainer.run()
    minutes = (time.time() - start) / 60
    info = {
        "command": "python -m rmisr_monai.training " + " ".join(argv if argv is not None else sys.argv[1:]),
        "recipe": None if args.recipe is None else str(args.recipe),
        "arguments": args.arguments,  # the recipe's options, then the command line's
        "data": [Path(v).name for v in args.volumes or args.images],
        "pictures": None if args.pictures is None else [Path(p).name for p in args.pictures],
        "pictures_share": None if args.pictures is None else args.pictures_share,
        "fov_padding": list(args.fov_padding) or None,
        "fov_padding_share": args.fov_padding_share,
        "fov_rim_tiles": args.fov_rim_tiles,
        "contrast_gamma": args.contrast_gamma,
        "iterations": trainer.state.iteration,  # what ran (in all, when resumed)
        "final_lr": trainer.optimizer.param_groups[0]["lr"],
        "minutes": round(minutes, 1),
        "device": str(args.device),
        "precision": args.precision,
        "init": None if args.init is None else Path(args.init).name,
        "transfer": None if args.transfer is None else Path(args.transfer).name,
        "scale_range": args.scale_range,
    }
    save_checkpoint(args.output, network, args.network, kwargs, intensity, info)
    print(f"wrote {args.output} after {minutes:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
