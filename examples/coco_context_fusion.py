"""Contextual Fusion for Adversarial Robustness (arXiv 2011.09526), reproduced with modfuse.

With no arguments, on the embedded synthetic world (no downloads):

1. Pretrain a foreground encoder on object crops (ImageNet's role) and a background encoder
   on scene labels (Places365's role), on a pretraining world; freeze both.
2. For a world with distinct contexts (each class in its own scene) and one with similar
   contexts (every class in every scene): cache the frozen features, then train fusion heads
   on them: foreground-only, background-only, joint (concat), joint + the paper's
   ``ModalityWeightPenalty("fg")``, and an adversarially trained foreground baseline.
3. Evaluate clean, foreground blur (sigma sweep), foreground FGSM (eps sweep), and the
   raw-image threat model (FGSM and blur on the image in front of the views, both views move);
   feature shift and modality reliance; write the report.

With ``--coco-root DIR --fg-weights FILE --bg-weights FILE``: the same on real COCO 2017 with
ImageNet / Places365 ResNet-18 checkpoints from local files (no pretraining step).

Run:  python examples/coco_context_fusion.py [--quick] [--out runs/coco_context_fusion]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from modfuse import ContextViews, FusionModel, distributed
from modfuse.attacks import FGSM, GaussianBlur
from modfuse.checkpoint import save_tensors
from modfuse.data import CocoContext, FeatureCache, StackedDataset
from modfuse.data.coco import coco_splits
from modfuse.data.synthetic import make_synthetic_coco
from modfuse.evaluate import Sweep, feature_shift, modality_reliance, robustness_sweep
from modfuse.regularizers import ModalityWeightPenalty
from modfuse.report import accuracy_tables, write_report
from modfuse.train import Trainer


@dataclass
class Settings:
    """Every knob of the experiment (the paper's exact values are not public)."""

    size: int = 48  # image side of the synthetic world and of both views
    n_pretrain: int = 3000  # images of the pretraining world
    n_train: int = 3000  # training images per evaluation world
    n_test: int = 600  # test images per evaluation world
    purity: float = 0.9  # distinct world: probability that an object is in its own scene
    width: int = 32  # small_cnn width of both encoders
    pretrain_epochs: int = 6
    head_epochs: int = 40  # fusion heads, on cached features
    head_lr: float = 3e-3
    adv_epochs: int = 3  # adversarial fine-tuning of the fg-only head, on raw inputs
    adv_eps: float = 8 / 255
    penalty_alpha: float = 0.05  # CE + alpha * ||theta_fg||^2
    blur_sigmas: tuple[float, ...] = (1.0, 2.0, 4.0)
    fgsm_eps: tuple[float, ...] = (2 / 255, 8 / 255, 16 / 255)
    image_fgsm_eps: tuple[float, ...] = (2 / 255, 8 / 255)
    seed: int = 0

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            n_pretrain=1500,
            n_train=1200,
            n_test=300,
            pretrain_epochs=5,
            head_epochs=40,
            adv_epochs=2,
        )


@dataclass
class Run:
    """Where and how the experiment runs (not part of its results)."""

    device: torch.device
    batch_size: int = 200  # evaluation and feature extraction
    workers: int | None = None  # DataLoader processes that decode images (None: machine default)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pretrain_encoder(
    data: StackedDataset, key: str, num_classes: int, s: Settings, out: Path, device: torch.device
) -> Path:
    """Train ``small_cnn`` + a linear head on ``data[key]``; save the encoder's weights."""
    model = FusionModel({key: {"name": "small_cnn", "width": s.width}}, num_classes=num_classes)
    trainer = Trainer(
        model, epochs=s.pretrain_epochs, lr=2e-3, seed=s.seed, progress=False, device=device
    )
    trainer.fit(data)
    path = out / f"{key}_encoder.safetensors"
    save_tensors(path, model.encoders[key].state_dict())
    return path


def heads(
    encoders: dict[str, dict],
    views: ContextViews,
    num_classes: int,
    s: Settings,
    train_feats,
    train_raw,
    device: torch.device,
    workers: int | None,
) -> dict[str, FusionModel]:
    """Train every compared model's fusion head on the frozen features.

    ``train_raw`` (streamed from disk) is read only by the adversarially trained baseline,
    whose attack needs the foreground view itself.
    """

    def build(mods: tuple[str, ...]) -> FusionModel:
        return FusionModel(
            {m: encoders[m] for m in mods}, "concat", num_classes=num_classes, views=views
        )

    common = dict(
        epochs=s.head_epochs,
        lr=s.head_lr,
        batch_size=128,
        seed=s.seed,
        progress=False,
        device=device,
        workers=workers,
    )
    plan = {
        "fg_only": (("fg",), []),
        "bg_only": (("bg",), []),
        "joint": (("bg", "fg"), []),
        "joint_fg_penalty": (("bg", "fg"), [ModalityWeightPenalty("fg", alpha=s.penalty_alpha)]),
    }
    models = {}
    for name, (mods, regs) in plan.items():
        model = build(mods)
        Trainer(model, regularizers=regs, **common).fit(train_feats.select(mods))
        models[name] = model
    # Adversarial training baseline: the fg-only head fine-tuned on FGSM examples of the
    # foreground, computed through the frozen encoder at every step (raw inputs, no cache).
    adv = build(("fg",))
    adv.load_state_dict(models["fg_only"].state_dict())
    Trainer(
        adv,
        epochs=s.adv_epochs,
        lr=s.head_lr / 3,
        batch_size=128,
        seed=s.seed,
        progress=False,
        device=device,
        workers=workers,
        adversarial=FGSM(eps=s.adv_eps, targets=("fg",)),
        adversarial_mix=0.5,
    ).fit(train_raw)
    models["fg_adv_trained"] = adv
    return models


def sweeps(s: Settings) -> list[Sweep]:
    return [
        Sweep("fg_blur", GaussianBlur(targets=("fg",)), list(s.blur_sigmas)),
        Sweep("fg_fgsm", FGSM(targets=("fg",)), list(s.fgsm_eps)),
        Sweep("image_blur", GaussianBlur(targets=("image",)), list(s.blur_sigmas)),
        Sweep("image_fgsm", FGSM(targets=("image",)), list(s.image_fgsm_eps)),
    ]


def run_world(
    world: str,
    train,
    test,
    encoders: dict[str, dict],
    views: ContextViews,
    s: Settings,
    out: Path,
    run: Run,
) -> tuple[list[dict], dict, dict]:
    """Cache features, train the heads, evaluate: the raw datasets are streamed from disk
    (images decode in DataLoader workers), never stacked in memory."""
    num_classes = len(train.classes)
    log(f"[{world}] {len(train)} train / {len(test)} test items, on {run.device}")
    joint_template = FusionModel(encoders, "concat", num_classes=num_classes, views=views)
    joint_template.to(run.device)  # the cache extracts on the model's device
    cache = FeatureCache(
        out / "cache", batch_size=run.batch_size, workers=run.workers, progress=False
    )
    train_feats = cache.features(joint_template, train)
    test_feats = cache.features(joint_template, test)
    log(f"[{world}] features cached (computed now: {cache.computed or 'none'}); training heads")
    models = heads(encoders, views, num_classes, s, train_feats, train, run.device, run.workers)
    for name, model in models.items():
        model.save(out / "models" / world / name)
    log(f"[{world}] evaluating {len(models)} models under {len(sweeps(s))} perturbation sweeps")
    rows = robustness_sweep(
        models, test, sweeps(s), batch_size=run.batch_size, progress=False, workers=run.workers
    )
    for r in rows:
        r["world"] = world
    shifts = {
        f"{world}: {where} blur sigma=2": feature_shift(
            models["joint"], test, GaussianBlur(2.0, targets=(where,)), run.batch_size
        )
        for where in ("fg", "image")
    }
    # Reliance needs features only: the cached test features serve.
    reliance = {
        f"{world}: {n}": modality_reliance(models[n], test_feats.select(models[n].modalities))
        for n in ("joint", "joint_fg_penalty")
    }
    return rows, shifts, reliance


def summary(rows: list[dict], shifts: dict, reliance: dict) -> dict[str, Any]:
    """The paper's claims as numbers, per world (what the test checks)."""
    out: dict[str, Any] = {}
    for world in dict.fromkeys(r["world"] for r in rows):
        acc = {
            (r["model"], r["perturbation"], r["strength"]): r["accuracy"]
            for r in rows
            if r["world"] == world
        }

        w = {"clean": {m: acc[(m, "clean", 0.0)] for m in {k[0] for k in acc}}}
        for pert in ("fg_blur", "fg_fgsm", "image_blur", "image_fgsm"):
            # Mean accuracy over the sweep's strengths, per model.
            w[pert] = {
                m: statistics.mean(v for (mm, p, _), v in acc.items() if mm == m and p == pert)
                for m in w["clean"]
            }
        shift = shifts.get(f"{world}: fg blur sigma=2")
        if shift:
            w["fg_blur_shift"] = {m: v["relative_l2"] for m, v in shift.items()}
        w["fg_norm_share"] = {
            k.split(": ")[1]: v["fg"]["norm_share"]
            for k, v in reliance.items()
            if k.startswith(f"{world}: ")
        }
        out[world] = w
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    parser.add_argument("--out", default="runs/coco_context_fusion", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--coco-root", type=Path, help="real COCO 2017 folder (train2017/, val2017/, annotations/)"
    )
    parser.add_argument("--categories", nargs="+", help="COCO category names to use (default: all)")
    parser.add_argument("--fg-weights", help="ImageNet ResNet-18 checkpoint (safetensors or .pth)")
    parser.add_argument(
        "--bg-weights", help="Places365 ResNet-18 checkpoint (e.g. resnet18_places365.pth.tar)"
    )
    parser.add_argument("--image-size", type=int, default=256, help="COCO: raw image side")
    parser.add_argument("--view-size", type=int, default=224, help="COCO: fg / bg view side")
    parser.add_argument(
        "--hide-instances",
        choices=["category", "item", "all"],
        default="category",
        help="COCO: other instances painted out of the image (default: the item's category)",
    )
    parser.add_argument(
        "--device", help="where to train and evaluate: cuda, cuda:1, cpu (default: GPU if any)"
    )
    parser.add_argument(
        "--batch-size", type=int, help="evaluation / extraction batch (default 200; COCO 32)"
    )
    parser.add_argument("--workers", type=int, help="image-decoding DataLoader processes")
    args = parser.parse_args(argv)
    device = torch.device(args.device) if args.device else distributed.device()
    default_batch = 32 if args.coco_root else 200  # 224 px ResNet batches are heavy
    run = Run(device, args.batch_size or default_batch, args.workers)
    s = Settings.quick() if args.quick else Settings()
    s.seed = args.seed
    torch.manual_seed(s.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    if args.coco_root:
        if not (args.fg_weights and args.bg_weights):
            parser.error("--coco-root needs --fg-weights and --bg-weights (local checkpoint files)")
        views = ContextViews(size=args.view_size)
        encoders = {
            k: {"name": "timm:resnet18", "weights": str(w), "freeze": True}
            for k, w in (("fg", args.fg_weights), ("bg", args.bg_weights))
        }
        worlds = {
            "coco": coco_splits(
                args.coco_root,
                views=views,
                categories=args.categories,
                image_size=args.image_size,
                hide_instances=args.hide_instances,
            )
        }
    else:
        views = ContextViews(size=s.size)
        log("writing the synthetic worlds")
        data_root = out / "data"
        pre = make_synthetic_coco(
            data_root / "pretrain", s.n_pretrain, 0, s.size, "similar", seed=s.seed + 100
        )
        worlds = {}
        for contexts in ("distinct", "similar"):
            root = make_synthetic_coco(
                data_root / contexts,
                s.n_train,
                s.n_test,
                s.size,
                contexts,
                context_purity=s.purity,
                seed=s.seed + 1,
            )
            worlds[contexts] = coco_splits(root, views=views)
        pre_data = CocoContext(
            pre / "train2017", pre / "annotations/instances_train2017.json", views=views
        )
        stacked = StackedDataset.from_dataset(pre_data, ["fg", "bg", "scene"])
        scenes = stacked.tensors["scene"].long()
        log("pretraining the foreground encoder on object crops (ImageNet's role)")
        fg_path = pretrain_encoder(
            StackedDataset({"fg": stacked.tensors["fg"]}, stacked.labels),
            "fg",
            len(pre_data.classes),
            s,
            out,
            run.device,
        )
        log("pretraining the background encoder on scene labels (Places365's role)")
        bg_path = pretrain_encoder(
            StackedDataset({"bg": stacked.tensors["bg"]}, scenes), "bg", 6, s, out, run.device
        )
        encoders = {
            k: {"name": "small_cnn", "width": s.width, "weights": str(p), "freeze": True}
            for k, p in (("fg", fg_path), ("bg", bg_path))
        }

    rows, shifts, reliance = [], {}, {}
    class_map = {}
    for world, (train, test) in worlds.items():
        r, sh, rel = run_world(world, train, test, encoders, views, s, out, run)
        rows += r
        shifts.update(sh)
        reliance.update(rel)
        class_map[world] = train.class_to_index
    elapsed = time.perf_counter() - start
    result = summary(rows, shifts, reliance)
    manifest = {
        "settings": asdict(s),
        "encoders": encoders,
        "class_map": class_map,
        "seconds": elapsed,
        "summary": result,
        "seed": s.seed,
    }
    notes = (
        "Foreground-only, background-only and joint (concat) heads on frozen encoders, after "
        "arXiv 2011.09526. `fg_*` perturbations touch only the foreground view (the paper's "
        "threat model); `image_*` perturb the raw image in front of the views, so both views "
        f"move. Run time: {elapsed / 60:.1f} min."
    )
    report = write_report(
        out / "report",
        rows,
        feature_shifts=shifts,
        reliance=reliance,
        manifest=manifest,
        group_by="world",
        title="Contextual fusion: robustness report",
        notes=notes,
    )
    (out / "report" / "summary.json").write_text(json.dumps(result, indent=2))
    print(accuracy_tables(rows, "world"))
    print(json.dumps(result, indent=2))
    log(f"done in {elapsed / 60:.1f} min; report: {report}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
