"""Contextual Fusion for Adversarial Robustness (arXiv 2011.09526), reproduced with modfuse.

With no arguments, on the embedded synthetic world (no downloads):

1. Pretrain a foreground encoder on object crops of classes the evaluation never shows
   (ImageNet's role) and a background encoder on scene labels (Places365's role); freeze both.
2. For a world with distinct contexts (each class in its own scene) and one with similar
   contexts (every class in every scene): cache the frozen features, then, for every seed
   (``--seeds``, default 0 1 2), train fusion heads on them: foreground-only,
   background-only, joint (concat), joint + the paper's ``ModalityWeightPenalty("fg")`` (and
   more penalty strengths for the trade-off plot), and an adversarially trained baseline.
3. Evaluate clean, foreground blur and FGSM for every seed; the matched threat models (the
   same eps on the object's pixels, the background view, the whole raw image); the
   foreground worst case (PGD, APGD-CE, APGD-T, Square) on a stated subsample; feature shift
   and modality reliance. The report judges the paper's claims on the seed means, says which
   sanity checks ran, and says plainly where a claim does not hold.

With ``--coco-root DIR --fg-weights FILE --bg-weights FILE``: the same on real COCO 2017 with
ImageNet / Places365 ResNet-18 checkpoints from local files (no pretraining step).

Run:  python examples/coco_context_fusion.py [--quick] [--seeds 0 1 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from modfuse import ContextViews, FusionModel, distributed
from modfuse.attacks import APGD, FGSM, PGD, Ensemble, GaussianBlur, Square
from modfuse.data import CocoContext, FeatureCache, FeatureDataset, StackedDataset
from modfuse.data.coco.dataset import coco_splits
from modfuse.data.hashing import dataset_fingerprint
from modfuse.data.synthetic import PRETRAIN_CLASSES, REFERENCE_DIFFICULTY, make_synthetic_coco
from modfuse.io import save_tensors
from modfuse.regularizers import ModalityWeightPenalty
from modfuse.reporting.manifest import folder_digest
from modfuse.reporting.report import accuracy_tables, seed_means, write_report
from modfuse.robustness import Sweep, feature_shift, modality_reliance, robustness_sweep
from modfuse.training.trainer import Trainer

sys.path.insert(0, str(Path(__file__).parent))  # the claims module beside this file
import context_fusion_claims as claims_lib  # noqa: E402


@dataclass
class Settings:
    """Every knob of the experiment (the paper's exact values are not public)."""

    size: int = 48  # image side of the synthetic world and of both views
    n_pretrain: int = 3000  # images of the pretraining world (its own classes)
    n_train: int = 3000  # training images per evaluation world
    n_test: int = 600  # test images per evaluation world
    purity: float = 0.9  # distinct world: probability that an object is in its own scene
    # Clutter, occlusion, scale and noise of make_synthetic_coco: clean fg accuracy 0.85-0.95.
    world: dict = field(default_factory=lambda: dict(REFERENCE_DIFFICULTY))
    width: int = 32  # small_cnn width of both encoders
    pretrain_epochs: int = 6
    head_epochs: int = 40  # fusion heads, on cached features
    head_lr: float = 3e-3
    val_fraction: float = 0.1  # of the training items, held out to pick each head's epoch
    adv_epochs: int = 2  # adversarial fine-tuning of the fg-only head, on raw inputs
    adv_items: int = 1000  # training items it reads (FGSM through the encoder is the cost)
    adv_eps: float = 8 / 255
    penalty_alpha: float = 0.02  # CE + alpha * ||theta_fg||^2
    alpha_sweep: tuple[float, ...] = (0.0, 0.005, 0.02, 0.1, 1.0)  # the trade-off plot
    blur_sigmas: tuple[float, ...] = (1.0, 2.0, 4.0)
    eps: tuple[float, ...] = (2 / 255, 8 / 255, 16 / 255)  # every gradient threat model
    worst_case_eps: tuple[float, ...] = (2 / 255, 8 / 255)
    worst_case_items: int = 100  # the first items of the test split (Square's queries cost)
    worst_case_steps: int = 10  # of each PGD / APGD member
    worst_case_queries: int = 50  # of the Square member (a gradient-free check, not a search)
    seeds: tuple[int, ...] = (0, 1, 2)  # heads, adversarial training and attack starts
    world_seed: int = 0  # the worlds and the pretrained encoders are fixed across seeds

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            n_pretrain=1000,
            n_train=1200,
            n_test=300,
            pretrain_epochs=4,
            adv_epochs=1,
            adv_items=600,
            worst_case_items=40,
            seeds=(0,),
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
        model, epochs=s.pretrain_epochs, lr=2e-3, seed=s.world_seed, progress=False, device=device
    )
    trainer.fit(data)
    path = out / f"{key}_encoder.safetensors"
    save_tensors(path, model.encoders[key].state_dict())
    return path


def split_features(feats: FeatureDataset, fraction: float, seed: int):
    """A seeded (train, validation) split of cached features."""
    n = len(feats)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = n - max(1, int(n * fraction))

    def part(idx: torch.Tensor) -> FeatureDataset:
        return FeatureDataset({k: v[idx] for k, v in feats.tensors.items()}, feats.labels[idx])

    return part(order[:cut]), part(order[cut:])


def heads(
    encoders: dict[str, dict],
    views: ContextViews,
    num_classes: int,
    s: Settings,
    seed: int,
    train_feats: FeatureDataset,
    train_raw,
    run: Run,
    alphas: tuple[float, ...] = (),
) -> tuple[dict[str, FusionModel], dict[str, list]]:
    """Train every compared model's fusion head on the frozen features, for one seed.

    ``train_raw`` (streamed from disk) is read only by the adversarially trained baseline,
    whose attack needs the foreground view itself. ``alphas``: extra joint heads with the
    penalty at those strengths (named ``joint_alpha_<a>``), for the trade-off plot.

    Returns:
        The models and their training histories (per epoch: loss, accuracy, val accuracy).
    """

    def build(mods: tuple[str, ...]) -> FusionModel:
        return FusionModel(
            {m: encoders[m] for m in mods}, "concat", num_classes=num_classes, views=views
        )

    common = dict(
        epochs=s.head_epochs,
        lr=s.head_lr,
        batch_size=128,
        seed=seed,
        progress=False,
        device=run.device,
        workers=run.workers,
    )
    train, val = split_features(train_feats, s.val_fraction, s.world_seed)
    plan = {
        "fg_only": (("fg",), []),
        "bg_only": (("bg",), []),
        "joint": (("bg", "fg"), []),
        "joint_fg_penalty": (("bg", "fg"), [ModalityWeightPenalty("fg", alpha=s.penalty_alpha)]),
    }
    plan |= {
        f"joint_alpha_{a:g}": (("bg", "fg"), [ModalityWeightPenalty("fg", alpha=a)])
        for a in alphas
        if a not in (0.0, s.penalty_alpha)  # those two are "joint" and "joint_fg_penalty"
    }
    models, histories = {}, {}
    for name, (mods, regs) in plan.items():
        model = build(mods)
        trainer = Trainer(model, regularizers=regs, **common)
        histories[name] = trainer.fit(train.select(mods), val.select(mods))
        models[name] = model
    # Adversarial training baseline: the fg-only head fine-tuned on FGSM examples of the
    # foreground, computed through the frozen encoder at every step (raw inputs, no cache).
    adv = build(("fg",))
    adv.load_state_dict(models["fg_only"].state_dict())
    adv_data = Subset(train_raw, range(min(s.adv_items, len(train_raw))))
    histories["fg_adv_trained"] = Trainer(
        adv,
        **{**common, "epochs": s.adv_epochs, "lr": s.head_lr / 3},
        adversarial=FGSM(eps=s.adv_eps, targets=("fg",), seed=seed),
        adversarial_mix=0.5,
    ).fit(adv_data)
    models["fg_adv_trained"] = adv
    return models, histories


def sweeps(s: Settings) -> list[Sweep]:
    """Blur and FGSM of the foreground view: the paper's threat model, for every seed."""
    return [
        Sweep("fg_blur", GaussianBlur(targets=("fg",)), list(s.blur_sigmas)),
        Sweep("fg_fgsm", FGSM(targets=("fg",)), list(s.eps)),
    ]


def threat_model_sweeps(s: Settings) -> list[Sweep]:
    """The other attackers at the same eps, in the same pixel units: the object's pixels in
    the raw image, the background view, the whole raw image (and a raw-image blur)."""
    eps = list(s.eps)
    return [
        Sweep("object_fgsm", FGSM(targets=("image",), region="mask"), eps),
        Sweep("bg_fgsm", FGSM(targets=("bg",)), eps),
        Sweep("image_fgsm", FGSM(targets=("image",)), eps),
        Sweep("image_blur", GaussianBlur(targets=("image",)), list(s.blur_sigmas)),
    ]


def worst_case(s: Settings, seed: int) -> Ensemble:
    """AutoAttack-style worst case on the foreground view: PGD (random start), APGD-CE,
    APGD-DLR targeted at the runner-up classes, and the gradient-free Square; each member
    runs only on the samples the earlier ones failed to break."""
    e, steps, t = max(s.worst_case_eps), s.worst_case_steps, ("fg",)
    return Ensemble(
        [
            PGD(e, steps=steps, targets=t, seed=seed),  # step 2.5 eps / steps
            APGD(e, steps, loss="ce", targets=t, seed=seed),
            APGD(e, steps, loss="dlr", target_classes=2, targets=t, seed=seed),
            Square(e, queries=s.worst_case_queries, targets=t, seed=seed),
        ],
        eps=e,
    )


def label(rows: list[dict], world: str, flags: list[dict]) -> list[dict]:
    """Split ``"joint#s1"`` into ``model="joint"``, ``seed=1``; tag the world."""
    for r in rows:
        r["model"], seed = r["model"].rsplit("#s", 1)
        r["seed"], r["world"] = int(seed), world
    for f in flags:
        name, seed = f["model"].rsplit("#s", 1)
        f["model"] = f"{name} (seed {seed}, {world})"
    return rows


def run_world(
    world: str,
    train,
    test,
    encoders: dict[str, dict],
    views: ContextViews,
    s: Settings,
    out: Path,
    run: Run,
) -> dict[str, Any]:
    """Cache features, train the heads of every seed, evaluate: the raw datasets are streamed
    from disk (images decode in DataLoader workers), never stacked in memory."""
    num_classes = len(train.classes)
    log(f"[{world}] {len(train)} train / {len(test)} test items, seeds {list(s.seeds)}")
    joint_template = FusionModel(encoders, "concat", num_classes=num_classes, views=views)
    joint_template.to(run.device)  # the cache extracts on the model's device
    cache = FeatureCache(
        out / "cache", batch_size=run.batch_size, workers=run.workers, progress=False
    )
    train_feats = cache.features(joint_template, train)
    test_feats = cache.features(joint_template, test)
    log(f"[{world}] features cached (computed now: {cache.computed or 'none'})")
    alphas = s.alpha_sweep if world == "distinct" else ()
    models: dict[str, FusionModel] = {}
    histories: dict[str, list] = {}
    for seed in s.seeds:
        ms, hs = heads(encoders, views, num_classes, s, seed, train_feats, train, run, alphas)
        for name, model in ms.items():
            model.save(out / "models" / world / f"seed{seed}" / name)
            models[f"{name}#s{seed}"] = model
        if seed == s.seeds[0]:
            histories |= {f"{world}: {n} (seed {seed})": h for n, h in hs.items()}
    log(f"[{world}] {len(models)} heads trained; evaluating")
    main = {n: m for n, m in models.items() if not n.startswith("joint_alpha_")}
    common = dict(batch_size=run.batch_size, progress=False, workers=run.workers)
    result = robustness_sweep(main, test, sweeps(s), **common)
    rows, flags, checks = label(list(result), world, result.flags), result.flags, [result.checks]
    baselines = {world: result.baselines}
    per_class = [{**r, "world": world} for r in result.per_class or []]
    if world == "distinct":
        # Who moves what, on the first seed's models (the raw-image attacks go through the
        # views and both encoders: the costliest sweeps of the run).
        first_seed = {n: m for n, m in main.items() if n.endswith(f"#s{s.seeds[0]}")}
        log(f"[{world}] matched threat models on the seed-{s.seeds[0]} models")
        tm = robustness_sweep(first_seed, test, threat_model_sweeps(s), **common)
        # Its clean rows repeat the first sweep's exactly.
        rows += [r for r in label(list(tm), world, tm.flags) if r["perturbation"] != "clean"]
        flags += tm.flags
        checks.append(tm.checks)
    extra = {n: m for n, m in models.items() if n.startswith("joint_alpha_")}
    if extra:
        log(f"[{world}] penalty trade-off: {len(extra)} more heads under fg FGSM")
        more = robustness_sweep(
            extra, test, [Sweep("fg_fgsm", FGSM(targets=("fg",)), list(s.eps))], **common
        )
        rows += label(list(more), world, more.flags)
        flags += more.flags
        checks.append(more.checks)
    if world == "distinct":
        n = min(s.worst_case_items, len(test))
        log(f"[{world}] worst case of the foreground on the first {n} test items")
        strong = {k: m for k, m in main.items() if k.split("#")[0] in WORST_CASE_MODELS}
        for seed in s.seeds:
            picked = {k: m for k, m in strong.items() if k.endswith(f"#s{seed}")}
            wc = robustness_sweep(
                picked,
                Subset(test, range(n)),
                [
                    Sweep("fg_fgsm", FGSM(targets=("fg",)), list(s.worst_case_eps)),
                    Sweep("fg_worst_case", worst_case(s, seed), list(s.worst_case_eps)),
                ],
                **common,
            )
            rows += label(list(wc), f"{world}, first {n} items", wc.flags)
            baselines[f"{world}, first {n} items"] = wc.baselines
            flags += wc.flags
            checks.append(wc.checks)
    first = f"joint#s{s.seeds[0]}"
    shifts = {
        f"{world}: {where} blur sigma=2": feature_shift(
            models[first], test, GaussianBlur(2.0, targets=(where,)), run.batch_size
        )
        for where in ("fg", "image")
    }
    # Reliance needs features only: the cached test features serve.
    reliance = {
        f"{world}: {n}": modality_reliance(
            models[f"{n}#s{s.seeds[0]}"], test_feats.select(models[first].modalities)
        )
        for n in ("joint", "joint_fg_penalty")
    }
    return {
        "rows": rows,
        "flags": flags,
        "checks": checks,
        "shifts": shifts,
        "reliance": reliance,
        "histories": histories,
        "baselines": baselines,
        "per_class": per_class,
    }


#: Models attacked with the worst-case ensemble (the background-only model has no fg input).
WORST_CASE_MODELS = ("fg_only", "joint", "joint_fg_penalty", "fg_adv_trained")


#: What each family of perturbations moves, for the report's header.
MOVES = {
    "fg_": "`fg_*` perturbations touch only the foreground view (the paper's threat model)",
    "object_": "`object_*` only the object's pixels in the raw image",
    "bg_": "`bg_*` only the background view",
    "image_": "`image_*` the whole raw image in front of the views",
}


def swept_note(rows: list[dict]) -> str:
    """One sentence on the perturbation families that ran (none that did not)."""
    ran = {r["perturbation"] for r in rows}
    parts = [text for prefix, text in MOVES.items() if any(p.startswith(prefix) for p in ran)]
    return ("; ".join(parts) + ".") if parts else "No perturbation was swept: clean rows only."


def summary(rows: list[dict], shifts: dict, reliance: dict) -> dict[str, Any]:
    """The paper's claims as numbers, per world, on the seed means (what the test checks)."""
    seeds = claims_lib.per_seed(rows)
    out: dict[str, Any] = claims_lib.seed_summary(seeds)
    for world, w in out.items():
        shift = shifts.get(f"{world}: fg blur sigma=2")
        if shift:
            w["fg_blur_shift"] = {m: v["relative_l2"] for m, v in sorted(shift.items())}
        share = {
            k.split(": ")[1]: v["fg"]["norm_share"]
            for k, v in reliance.items()
            if k.startswith(f"{world}: ")
        }
        if share:
            w["fg_norm_share"] = dict(sorted(share.items()))
    out["claims"] = claims_lib.claims(seeds)
    out["seeds"] = sorted({r["seed"] for r in rows if r.get("seed") != "mean"})
    return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run (1 seed)")
    parser.add_argument("--out", default="runs/coco_context_fusion", help="output folder")
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="training seeds (default: 0 1 2; --quick: 0)"
    )
    parser.add_argument("--seed", type=int, help="one seed (same as --seeds N)")
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
    if args.seed is not None and args.seeds is not None:
        parser.error("give --seeds or --seed, not both")
    if args.coco_root and not (args.fg_weights and args.bg_weights):
        parser.error("--coco-root needs --fg-weights and --bg-weights (local checkpoint files)")
    return args


def synthetic_worlds(s: Settings, out: Path, run: Run) -> tuple[ContextViews, dict, dict]:
    """Write the worlds, pretrain and freeze both encoders: (views, encoders, worlds)."""
    views = ContextViews(size=s.size)
    log("writing the synthetic worlds")
    data_root = out / "data"
    pre = make_synthetic_coco(
        data_root / "pretrain",
        s.n_pretrain,
        0,
        s.size,
        "similar",
        seed=s.world_seed + 100,
        classes=PRETRAIN_CLASSES,
        **s.world,
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
            seed=s.world_seed + 1,
            **s.world,
        )
        worlds[contexts] = coco_splits(root, views=views)
    pre_data = CocoContext(
        pre / "train2017", pre / "annotations/instances_train2017.json", views=views
    )
    stacked = StackedDataset.from_dataset(pre_data, ["fg", "bg", "scene"])
    scenes = stacked.tensors["scene"].long()
    log(
        f"pretraining the foreground encoder on object crops of {PRETRAIN_CLASSES} "
        "(ImageNet's role: other classes than the evaluation's)"
    )
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
    return views, encoders, worlds


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    device = torch.device(args.device) if args.device else distributed.device()
    default_batch = 32 if args.coco_root else 200  # 224 px ResNet batches are heavy
    run = Run(device, args.batch_size or default_batch, args.workers)
    s = Settings.quick() if args.quick else Settings()
    if args.seeds or args.seed is not None:
        s.seeds = tuple(args.seeds or [args.seed])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    if args.coco_root:
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
        torch.manual_seed(s.world_seed)
        views, encoders, worlds = synthetic_worlds(s, out, run)

    found: dict[str, Any] = {
        "rows": [],
        "flags": [],
        "checks": [],
        "shifts": {},
        "reliance": {},
        "histories": {},
        "baselines": {},
        "per_class": [],
    }
    class_map = {}
    for world, (train, test) in worlds.items():
        part = run_world(world, train, test, encoders, views, s, out, run)
        for k in ("rows", "flags", "checks", "per_class"):
            found[k] += part[k]
        for k in ("shifts", "reliance", "histories", "baselines"):
            found[k].update(part[k])
        class_map[world] = train.class_to_index
    rows = found["rows"]
    means = seed_means(rows)
    elapsed = time.perf_counter() - start
    result = summary(rows, found["shifts"], found["reliance"])
    manifest = {
        "settings": asdict(s),
        "encoders": encoders,
        "class_map": class_map,
        "seconds": elapsed,
        "summary": result,
        "seeds": list(s.seeds),
        # Which bytes each world held: generated worlds by a hash of their files, COCO by
        # its fingerprint (annotation file and each image's size and time).
        "data": {
            world: (folder_digest(out / "data" / world) if not args.coco_root else None)
            or dataset_fingerprint(test)
            for world, (_, test) in worlds.items()
        },
    }
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    notes = [
        "Foreground-only, background-only and joint (concat) heads on frozen encoders, after "
        f"arXiv 2011.09526. {swept_note(rows)} Seeds {list(s.seeds)} train the heads, the "
        "adversarial baseline and the attacks' random starts; the worlds and the pretrained "
        "encoders are the same for every seed (they stand in for fixed public checkpoints). "
        "Cells are means over the seeds (± their standard deviation); results.csv has every "
        f"seed and 95% Wilson intervals. Run time: {elapsed / 60:.1f} min.",
        "",
        "## The paper's claims, on the seed means",
        "",
        claims_lib.claims_table(result["claims"]),
    ]
    if "distinct" in worlds:
        eps = 8 / 255
        notes += [
            "",
            f"## Who moves what: matched threat models (FGSM, eps {round(eps * 255)}/255, "
            f"distinct world, seed {s.seeds[0]})",
            "",
            "The same L-inf budget in the same [0, 1] pixel units, spent by attackers who "
            "can change different pixels; the models of the first seed (these sweeps go "
            "through the views and both encoders, the costliest of the run). Every eps is in "
            "the accuracy tables below.",
            "",
            claims_lib.threat_model_table(
                rows,
                "distinct",
                eps,
                ["fg_only", "bg_only", "joint", "joint_fg_penalty", "fg_adv_trained"],
                s.seeds[0],
            ),
            "",
            f"Worst case on the foreground (`fg_worst_case`: PGD-{s.worst_case_steps} with a "
            f"random start, APGD-CE, APGD-DLR targeted, Square with {s.worst_case_queries} "
            f"queries; eps {', '.join(f'{round(e * 255)}/255' for e in s.worst_case_eps)}) "
            "is measured on the first "
            f"{min(s.worst_case_items, s.n_test)} test items of the distinct world, beside "
            "FGSM on the same items (group `distinct, first ... items` below).",
        ]
        alphas = {"joint": 0.0, "joint_fg_penalty": s.penalty_alpha} | {
            f"joint_alpha_{a:g}": a for a in s.alpha_sweep if a not in (0.0, s.penalty_alpha)
        }
        claims_lib.tradeoff_plot(report_dir / "penalty_tradeoff.png", means, "distinct", alphas)
        notes += [
            "",
            "## Penalty trade-off (distinct world)",
            "",
            "![penalty trade-off](penalty_tradeoff.png)",
        ]
    report = write_report(
        report_dir,
        rows + means,
        feature_shifts=found["shifts"],
        reliance=found["reliance"],
        manifest=manifest,
        group_by="world",
        title="Contextual fusion: robustness report",
        notes="\n".join(notes),
        flags=found["flags"],
        checks=claims_lib.merge_checks(found["checks"]),
        histories=found["histories"],
        baselines=found["baselines"],
        per_class=found["per_class"],
    )
    (report_dir / "summary.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    print(accuracy_tables(rows + means, "world", found["baselines"]))
    print(claims_lib.claims_table(result["claims"]))
    log(f"done in {elapsed / 60:.1f} min; report: {report}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
