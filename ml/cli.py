"""Command line: python -m ml {train,evaluate,predict,calibrate,export,average,benchmark}."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
from pathlib import Path

from ml.errors import MLError

logger = logging.getLogger("ml")


# The site's default IMAGE_MAX_PIXELS: a 24-megapixel photo passes with room to spare.
DEFAULT_MAX_PIXELS = 50_000_000


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from ml.config import MODES, TrainConfig

    defaults = TrainConfig(data_dir="", out_dir="")
    parser = argparse.ArgumentParser(prog="python -m ml", description="Heritage element classifier.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model and save the best epoch")
    train.add_argument("--config", help="JSON file with TrainConfig fields; flags override it")
    train.add_argument(
        "--data", dest="data_dir", help="dataset root with train/<class>/ folders (required unless --config gives it)"
    )
    train.add_argument(
        "--out",
        dest="out_dir",
        help="output folder for model.safetensors and model.json (required unless --config gives it)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace a model already saved in the --out folder")
    train.add_argument("--backbone", help=f"Lite name or timm architecture (default {defaults.backbone})")
    train.add_argument("--weights", dest="weights_file", help="local ImageNet weights for a timm architecture")
    train.add_argument("--mode", choices=MODES, help=f"what to train (default {defaults.mode})")
    train.add_argument("--epochs", type=int, help=f"maximum epochs (default {defaults.epochs})")
    train.add_argument("--batch-size", type=int, help=f"images per batch (default {defaults.batch_size})")
    train.add_argument(
        "--lr", dest="learning_rate", type=float, help=f"peak learning rate (default {defaults.learning_rate})"
    )
    train.add_argument(
        "--warmup-epochs", type=float, help=f"linear learning-rate warm-up in epochs (default {defaults.warmup_epochs})"
    )
    train.add_argument(
        "--init-from", help="model folder to continue from, trained on the same data and validation split"
    )
    train.add_argument(
        "--teacher",
        help="model folder or saved ensemble whose predictions this run also learns from, with the same validation split and input",
    )
    train.add_argument(
        "--distill-weight",
        type=float,
        help=f"share of the loss spent matching the teacher, 0 to 1 (default {defaults.distill_weight})",
    )
    train.add_argument(
        "--distill-temperature",
        type=float,
        help=f"divisor of both networks' outputs before they are compared, above 0 and at most 100 "
        f"(default {defaults.distill_temperature})",
    )
    train.add_argument("--image-size", type=int, help=f"input side in pixels (default {defaults.image_size})")
    train.add_argument(
        "--ema-decay", type=float, help="weight moving-average decay per batch, such as 0.998 (default: off)"
    )
    train.add_argument(
        "--cutmix-prob",
        type=float,
        help="share of batches mixed by CutMix, 0 to 1 (default: 0, off)",
    )
    train.add_argument(
        "--cutmix-alpha",
        type=float,
        help=f"CutMix box areas are drawn from Beta(alpha, alpha) (default {defaults.cutmix_alpha})",
    )
    train.add_argument(
        "--patience", type=int, help="stop after this many epochs without a better val macro-F1 (default: off)"
    )
    train.add_argument("--seed", type=int, help=f"random seed (default {defaults.seed})")
    train.add_argument("--split-seed", type=int, help="seed of the validation split (default: --seed)")
    train.add_argument(
        "--workers", dest="num_workers", type=int, help=f"data-loading processes (default {defaults.num_workers})"
    )
    train.add_argument("--device", help="auto, cpu or cuda (default auto)")
    # Config errors name TrainConfig fields, because the same messages reach
    # JSON configs and the site's job pages; main() adds the flag that sets each.
    train.set_defaults(
        flag_names={action.dest: action.option_strings[-1] for action in train._actions if "_" in action.dest}
    )

    evaluate = commands.add_parser("evaluate", help="score a model on the test split")
    evaluate.add_argument("model", help="model folder with model.json")
    evaluate.add_argument("--data", required=True, help="dataset root with test/<class>/ folders")
    evaluate.add_argument("--split", default="test", help="split folder to score (default test)")
    evaluate.add_argument("--no-tta", action="store_true", help="skip mirror-image test-time augmentation")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of tables")
    evaluate.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown to FILE")
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    evaluate.add_argument(
        "--record",
        action="store_true",
        help="store accuracy and macro-F1 under metrics.<split> in the model's model.json, for the site to show",
    )

    predict = commands.add_parser("predict", help="classify image files")
    predict.add_argument("files", nargs="+", help="image files")
    predict.add_argument("--model", help="model folder (default: the packaged default model)")
    predict.add_argument("--top", type=_positive_int, default=3, help="classes shown per file (default 3)")
    predict.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=DEFAULT_MAX_PIXELS,
        help=f"reject images with more pixels than this, as the site does (default {DEFAULT_MAX_PIXELS:,})",
    )
    predict.add_argument("--json", action="store_true", help="print one JSON object per line and file")
    predict.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")

    calibrate = commands.add_parser(
        "calibrate",
        help="fit the temperature that makes a model's probabilities match its accuracy on its validation split",
    )
    calibrate.add_argument("model", help="model folder with model.json; its model.json gains the temperature")
    calibrate.add_argument("--data", help="dataset root (default: the path in the model's training config)")
    calibrate.add_argument("--json", action="store_true", help="print JSON instead of text")
    calibrate.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")

    export = commands.add_parser("export", help="write a smaller inference copy of a model")
    export.add_argument("model", help="model folder with model.json")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--overwrite", action="store_true", help="replace a model already saved in the --out folder")
    export.add_argument(
        "--dtype", choices=("int8", "float16"), default="int8", help="weight storage type (default int8)"
    )
    export.add_argument("--data", help="dataset root: also report test macro-F1 of both models")

    average = commands.add_parser(
        "average", help="compare runs, their ensemble and their weight average on the shared validation split"
    )
    average.add_argument("models", nargs="+", help="two or more model folders trained with the same split seed")
    average.add_argument("--data", help="dataset root (default: the path in the models' training config)")
    average.add_argument("--out", help="save the model chosen by --keep to this folder")
    average.add_argument("--overwrite", action="store_true", help="replace a model already saved in the --out folder")
    average.add_argument(
        "--keep",
        choices=("average", "ensemble"),
        default="average",
        help="what --out saves: the weight average (one network) or the ensemble (default average)",
    )
    average.add_argument(
        "--recalibrate",
        action="store_true",
        help="re-estimate the average's batch-norm statistics on training images (default: average them)",
    )
    average.add_argument("--json", action="store_true", help="print JSON instead of a table")
    average.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")

    benchmark = commands.add_parser("benchmark", help="measure latency, throughput and memory")
    benchmark.add_argument("--model", help="model folder (default: the packaged default model)")
    benchmark.add_argument("--repeats", type=int, default=30, help="single-image timings per setup (default 30)")
    benchmark.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handlers = {
        "train": run_train,
        "evaluate": run_evaluate,
        "predict": run_predict,
        "calibrate": run_calibrate,
        "export": run_export,
        "average": run_average,
        "benchmark": run_benchmark,
    }
    try:
        return handlers[args.command](args)
    except MLError as error:
        print(f"error: {error}", file=sys.stderr)
        for field, flag in getattr(args, "flag_names", {}).items():
            if re.search(rf"\b{field}\b", str(error)) and flag not in str(error):
                print(f"  ({field} is set by {flag})", file=sys.stderr)
        return 2


def _train_config(args):
    from ml.config import TrainConfig
    from ml.errors import ConfigError

    names = [field.name for field in dataclasses.fields(TrainConfig)]
    flags = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if args.config:
        return TrainConfig.from_json_file(args.config, **flags)
    for required, flag in (("data_dir", "--data"), ("out_dir", "--out")):
        if required not in flags:
            raise ConfigError(f"{flag} is required unless --config gives {required}")
    return TrainConfig(**flags)


def _check_out_folder(out_dir: str, overwrite: bool) -> None:
    """Raise ConfigError if out_dir is a file, or contains a model and --overwrite was not given."""
    from ml.errors import ConfigError

    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"{out_dir} is a file, not a folder. Choose a folder for --out.")
    if not overwrite and (Path(out_dir) / "model.json").exists():
        raise ConfigError(
            f"{out_dir} already contains a model (model.json). Choose another --out folder, "
            "or pass --overwrite to replace it."
        )


def run_train(args) -> int:
    from tqdm import tqdm

    from ml.training import fit

    config = _train_config(args)
    _check_out_folder(config.out_dir, args.overwrite)
    bar = None

    def on_progress(event: dict) -> None:
        nonlocal bar
        if event["phase"] == "train":
            if bar is None:
                bar = tqdm(
                    total=event["batches"],
                    desc=f"epoch {event['epoch']}/{event['epochs']}",
                    leave=False,
                    disable=None,  # no bar when stderr is not a terminal, such as a log file
                )
            bar.update(1)
            bar.set_postfix(loss=f"{event['loss']:.4f}")
            if event["batch"] == event["batches"]:
                bar.close()
                bar = None

    result = fit(config, on_progress=on_progress)
    if bar is not None:
        bar.close()
    if result.model_dir is None:
        print("no epoch finished; nothing was saved", file=sys.stderr)
        return 1
    print(
        f"saved {result.model_dir} (best epoch {result.best_epoch}, "
        f"val macro-F1 {result.val_metrics['macro_f1']:.4f}, {result.seconds / 60:.1f} min)"
    )
    return 0


def run_evaluate(args) -> int:
    from ml.reporting import evaluation_summary, format_evaluation

    summary = evaluation_summary(args.model, args.data, args.split, tta=not args.no_tta, device=args.device)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_evaluation(summary))
    if args.markdown:
        from ml.reporting import markdown_evaluation

        Path(args.markdown).write_text(markdown_evaluation(summary))
    if args.record:
        from ml.checkpoints import record_split_metrics

        record_split_metrics(args.model, args.split, summary)
        print(f"recorded {args.split} metrics in {Path(args.model) / 'model.json'}", file=sys.stderr)
    return 0


def run_predict(args) -> int:
    from ml.errors import ImageDecodeError
    from ml.images import open_image
    from ml.inference import Predictor

    predictor = Predictor(args.model, device=args.device)
    failures = 0
    for file in args.files:
        try:
            image = open_image(file, draft_size=predictor.draft_size, max_pixels=args.max_pixels)
        except ImageDecodeError as error:
            failures += 1
            message = str(error)
            if (Path(file) / "model.json").is_file():
                message = f"{file} is a model folder, not an image. To classify with it, pass --model {file}"
            _print_prediction_error(file, message, args.json)
            continue
        probabilities = predictor.predict([image])[0]
        label = max(probabilities, key=probabilities.get)
        if args.json:
            print(json.dumps({"file": file, "label": label, "probabilities": probabilities}), flush=True)
        else:
            ranked = sorted(probabilities.items(), key=lambda item: item[1], reverse=True)[: args.top]
            print(f"{file}: " + ", ".join(f"{name} {p:.3f}" for name, p in ranked), flush=True)
    return 1 if failures else 0


def _print_prediction_error(file: str, message: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"file": file, "error": message}), flush=True)
    else:
        print(f"{file}: error: {message}", file=sys.stderr, flush=True)


def run_average(args) -> int:
    from ml.averaging import compare_on_validation, format_comparison

    if args.out:
        _check_out_folder(args.out, args.overwrite)
    result = compare_on_validation(
        args.models, args.data, args.out, recalibrate=args.recalibrate, device=args.device, keep=args.keep
    )
    print(json.dumps(result, indent=2) if args.json else format_comparison(result))
    return 0


def run_calibrate(args) -> int:
    from ml.calibration import calibrate

    report = calibrate(args.model, args.data, args.device)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if "skipped" in report:
        print(f"temperature not fitted: {report['skipped']}\nstored in {Path(args.model) / 'model.json'}")
        return 0
    print(
        f"temperature {report['temperature']:g}, fitted on {report['images']} validation images "
        f"(accuracy {report['accuracy']:.4f})\n"
        f"mean confidence {report['mean_confidence_before']:.4f} -> {report['mean_confidence_after']:.4f}\n"
        f"calibration error {report['ece_before']:.4f} -> {report['ece_after']:.4f}\n"
        f"negative log-likelihood {report['nll_before']:.4f} -> {report['nll_after']:.4f}\n"
        f"stored in {Path(args.model) / 'model.json'}"
    )
    return 0


def run_export(args) -> int:
    from ml.export import export_model

    _check_out_folder(args.out, args.overwrite)
    report = export_model(args.model, args.out, args.dtype, args.data)
    print(json.dumps(report, indent=2))
    return 0


def run_benchmark(args) -> int:
    from ml.benchmark import run_benchmarks

    run_benchmarks(args.model, args.repeats, args.device)
    return 0
