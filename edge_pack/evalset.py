"""The inputs every candidate is measured on: the user's labeled file (JSONL, CSV, .npz), a plain text for a
decoder (.txt), or a built-in label-free set, turned into ready model inputs with the model's own tokenizer
or image processor."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .resources import data_file
from .source import InputSpec

TEXT_TASKS = ("feature-extraction", "text-classification", "text-generation")
LM_TASK = "text-generation"
SYNTHETIC_SAMPLES = 16
# A decoder is scored on its eval text cut into chunks of --seq-len tokens (as llama-perplexity does with
# -c); this bounds the chunks, and so the time and the logits each candidate returns.
MAX_LM_CHUNKS = 32
SEED = 0


@dataclass
class EvalSet:
    samples: list[dict[str, np.ndarray]]  # batch-1 model inputs
    labels: np.ndarray | None
    origin: str
    latency_input: dict[str, np.ndarray]

    def head(self, count: int) -> "EvalSet":
        return EvalSet(self.samples[:count], None if self.labels is None else self.labels[:count],
                       self.origin, self.latency_input)


class Preprocessor:
    """The model's own preprocessing, from the files beside it (tokenizer or image processor)."""

    def __init__(self, task: str, support_dir: Path | None, specs: list[InputSpec] | None):
        self.task, self.specs = task, specs
        self.tokenizer = self.image_processor = None
        if task in TEXT_TASKS:
            self.tokenizer = _tokenizer(support_dir)
            self.max_length = _max_length(self.tokenizer, support_dir)
        elif task == "image-classification":
            self.image_processor = _image_processor(support_dir)

    def text(self, text: str, seq_len: int | None = None) -> dict[str, np.ndarray]:
        """Token ids of `text`; with seq_len, exactly that many tokens (capped at what the model takes)."""
        length = min(seq_len or self.max_length, self.max_length)
        kwargs = {"padding": "max_length"} if seq_len else {}
        encoded = self.tokenizer(text, truncation=True, max_length=length, return_tensors="np", **kwargs)
        return {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}

    def chunks(self, text: str, length: int, limit: int = MAX_LM_CHUNKS) -> list[dict[str, np.ndarray]]:
        """A decoder's inputs: the text's tokens cut into chunks of `length` tokens, each starting with the
        beginning-of-sequence token when the model has one; the last chunk may be shorter."""
        length = min(length, self.max_length)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        step = max(length - len(bos), 1)
        found = [bos + ids[start:start + step] for start in range(0, len(ids), step)][:limit]
        return [{"input_ids": np.asarray([chunk], dtype=np.int64)} for chunk in found if len(chunk) > len(bos) + 1]

    def image(self, image) -> dict[str, np.ndarray]:
        pixels = self.image_processor(images=image.convert("RGB"), return_tensors="np")["pixel_values"]
        return {"pixel_values": np.asarray(pixels, dtype=np.float32)}


def _max_length(tokenizer, folder: Path) -> int:
    """The longest input the model takes: the tokenizer's limit, or the position table's size when the
    tokenizer does not say (its default is a huge sentinel)."""
    limits = [tokenizer.model_max_length] if tokenizer.model_max_length < 1_000_000 else []
    config = folder / "config.json"
    if config.is_file():
        positions = json.loads(config.read_text()).get("max_position_embeddings")
        if isinstance(positions, int) and positions > 0:
            limits.append(positions)
    return min(limits, default=512)


def _tokenizer(folder: Path | None):
    from transformers import AutoTokenizer

    if folder is None or not any((folder / n).is_file() for n in ("tokenizer.json", "vocab.txt", "tokenizer.model")):
        raise UserError(f"no tokenizer files beside the model{f' in {folder}' if folder else ''}; "
                        "add tokenizer.json (or give an .npz of ready inputs with --eval)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load the tokenizer in {folder} ({str(exc).splitlines()[0][:200]}); restore its "
                        "tokenizer files") from None
    if not hasattr(tokenizer, "model_max_length"):  # transformers answers some broken folders with False
        raise UserError(f"cannot load the tokenizer in {folder}; restore its tokenizer files")
    return tokenizer


def _image_processor(folder: Path | None):
    from transformers import AutoImageProcessor

    if folder is None or not (folder / "preprocessor_config.json").is_file():
        raise UserError("no preprocessor_config.json beside the image model; add it (or give an .npz of ready "
                        "inputs with --eval)")
    return AutoImageProcessor.from_pretrained(str(folder))


# ---------------------------------------------------------------------------------------------- building

def label_names(folder: Path | None, task: str) -> list[str] | None:
    """A classifier's label names in index order (its config.json's id2label), which eval rows may name."""
    if folder is None or task not in ("text-classification", "image-classification"):
        return None
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    id2label = config.get("id2label") or {}
    return [id2label[k] for k in sorted(id2label, key=int)] or None


def make_evalset(pre: Preprocessor, eval_path: Path | None, seq_len: int, label_names: list[str] | None,
                 embedder: bool, what: str = "eval file") -> EvalSet:
    """`what` names the file in messages (an eval file, a calibration file)."""
    if eval_path is not None:
        eval_path = Path(eval_path)
        if eval_path.is_dir():
            samples, labels = _read_folder(eval_path, pre, label_names, what)
        elif not eval_path.is_file():
            raise UserError(f"{what} {eval_path} does not exist; give a .jsonl, .csv or .npz file "
                            "(or a folder of images for an image model)")
        elif eval_path.suffix == ".npz":
            samples, labels = _read_npz(eval_path, pre.specs)
        elif eval_path.suffix in (".jsonl", ".csv"):
            samples, labels = _read_rows(eval_path, pre, label_names, embedder)
        elif eval_path.suffix == ".txt" and pre.task == LM_TASK:
            samples, labels = _read_text(eval_path, pre, seq_len), None
        else:
            kinds = ".jsonl, .csv or .npz (or a folder of images)" + (" or .txt" if pre.task == LM_TASK else "")
            raise UserError(f"{what} {eval_path} must be {kinds}"
                            f"{'' if pre.task == LM_TASK else ' (.txt is for text-generation models)'}")
        origin = f"{eval_path} ({len(samples)} samples{', labeled' if labels is not None else ''})"
    else:
        samples, origin = _builtin(pre, seq_len)
        labels = None
    if pre.task == LM_TASK:  # a prompt of seq_len real tokens: a decoder takes no padding
        latency = pre.chunks(_latency_text() * 8, seq_len, limit=1)[0]
    elif pre.tokenizer is not None:
        latency = pre.text(_latency_text(), seq_len)
    else:
        latency = samples[0]
    return EvalSet(samples, labels, origin, latency)


def _latency_text() -> str:
    # A long passage so that --seq-len tokens are real text, padded only if the passage runs out.
    return " ".join(data_file("sentences.txt").read_text().split("\n"))


def _builtin(pre: Preprocessor, seq_len: int) -> tuple[list[dict], str]:
    if pre.task == LM_TASK:
        samples = pre.chunks(data_file("sentences.txt").read_text(), seq_len)
        return samples, f"built-in text ({len(samples)} chunks of up to {seq_len} tokens)"
    if pre.tokenizer is not None:
        lines = [line for line in data_file("sentences.txt").read_text().splitlines() if line.strip()]
        return [pre.text(line) for line in lines], f"built-in sentences ({len(lines)}, label-free)"
    rng = np.random.default_rng(SEED)
    if pre.image_processor is not None:
        from PIL import Image

        images = [Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) for _ in range(SYNTHETIC_SAMPLES)]
        return [pre.image(im) for im in images], f"seeded random images ({SYNTHETIC_SAMPLES}, label-free)"
    if not pre.specs:
        raise UserError("this model's inputs are unknown; give an .npz of ready inputs with --eval")
    samples = [{s.name: _random(s, rng) for s in pre.specs} for _ in range(SYNTHETIC_SAMPLES)]
    return samples, f"seeded random inputs ({SYNTHETIC_SAMPLES}, label-free)"


def _random(spec: InputSpec, rng: np.random.Generator) -> np.ndarray:
    shape = tuple((1 if i == 0 else 16) if d is None else d for i, d in enumerate(spec.shape))
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if "mask" in spec.name:
        return np.ones(shape, dtype=dtype)
    # Integer inputs index something whose size is unknown here (a vocabulary, token types): 0 and 1 are
    # valid for any of them. Real inputs come from --eval FILE.npz.
    return rng.integers(0, 2, shape).astype(dtype)


def _read_npz(path: Path, specs: list[InputSpec] | None) -> tuple[list[dict], np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable .npz of arrays ({str(exc).splitlines()[0]}); save it with "
                        "numpy.savez") from None
    labels = arrays.pop("labels", None)
    if specs is None:
        raise UserError(f"{path}: this model's input names are unknown, so an .npz cannot be matched; "
                        "give a .jsonl eval file")
    names = [s.name for s in specs]
    if len(names) == 1 and names[0] not in arrays and len(arrays) == 1:
        arrays = {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise UserError(f"{path} lacks arrays for inputs {missing}; name them as the model's inputs: {names}")
    counts = {len(arrays[n]) for n in names} | ({len(labels)} if labels is not None else set())
    if len(counts) != 1 or not counts or 0 in counts:
        raise UserError(f"{path}: arrays must share their first (sample) axis and not be empty; "
                        f"found lengths {sorted(counts)}")
    for spec in specs:
        _check_array(path, spec, arrays[spec.name])
    dtypes = {s.name: np.dtype(s.dtype) for s in specs}
    samples = [{n: arrays[n][i:i + 1].astype(dtypes[n]) for n in names} for i in range(counts.pop())]
    if labels is not None and labels.dtype.kind not in "iu":
        raise UserError(f"{path}: labels must be integers (class indices), found {labels.dtype}")
    return samples, None if labels is None else labels.astype(np.int64)


def _check_array(path: Path, spec: InputSpec, array: np.ndarray) -> None:
    """Samples stacked on the first axis, each shaped and typed as the model's input."""
    if array.dtype.kind not in "biuf":
        raise UserError(f"{path}: array {spec.name} holds {array.dtype}, not numbers; save numeric arrays")
    wanted = np.dtype(spec.dtype)
    if (wanted.kind == "f") != (array.dtype.kind == "f"):
        raise UserError(f"{path}: array {spec.name} holds {array.dtype}; the model takes {wanted.name} "
                        f"({'real numbers' if wanted.kind == 'f' else 'integers such as token ids'})")
    expected = tuple(spec.shape)
    if array.ndim != len(expected) or any(e is not None and e != a for e, a in zip(expected[1:], array.shape[1:])):
        shape = ", ".join("?" if d is None else str(d) for d in ("N", *expected[1:]))
        raise UserError(f"{path}: array {spec.name} has shape {array.shape}; the model takes ({shape}) with "
                        "samples on the first axis")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _read_folder(folder: Path, pre: Preprocessor, label_names: list[str] | None, what: str):
    """Images in a folder per class (labeled by the folder's name), or images directly in the folder."""
    if pre.image_processor is None:
        raise UserError(f"{what} {folder} is a folder; a folder of images works for image models with a "
                        "preprocessor_config.json; give a .jsonl, .csv or .npz file")

    def images(path: Path) -> list[Path]:
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = images(folder)
    if classes and loose:
        raise UserError(f"{folder} holds both images and class folders; put every image in its class's folder")
    rows = [(p, None) for p in loose] or [(p, c.name) for c in classes for p in images(c)]
    if not rows:
        raise UserError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}), directly or in class folders")
    from PIL import Image, UnidentifiedImageError

    if label_names and classes:
        unknown = [c.name for c in classes if c.name not in label_names]
        if unknown:
            raise UserError(f"{folder}: class folder {unknown[0]!r} is not one of the model's labels "
                            f"({', '.join(label_names[:10])}{'...' if len(label_names) > 10 else ''})")
    samples, groups = [], {}
    for path, _ in rows:
        try:
            samples.append(pre.image(Image.open(path)))
        except (OSError, UnidentifiedImageError) as exc:
            raise UserError(f"cannot read image {path} ({exc.__class__.__name__}); remove it or replace it") from None
    if classes:
        order = label_names or []
        labels = [order.index(c) if c in order else groups.setdefault(c, len(groups)) for _, c in rows]
        return samples, np.array(labels, dtype=np.int64)
    return samples, None


def _read_text(path: Path, pre: Preprocessor, seq_len: int) -> list[dict]:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise UserError(f"cannot read eval text {path} ({exc.strerror})") from None
    samples = pre.chunks(text, seq_len)
    if not samples:
        raise UserError(f"{path} holds too little text to score a decoder on; give a longer text")
    return samples


def _rows(path: Path):
    """(line number, row dict) of a JSONL or CSV file; a malformed line is an error naming it."""
    if path.suffix == ".csv":
        with open(path, newline="", errors="replace") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                yield reader.line_num, row
        return
    with open(path, errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: not valid JSON ({exc.msg}); each line must be one JSON object "
                                'like {"text": "...", "label": "..."}') from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{number}: expected a JSON object like " '{"text": "...", "label": "..."}')
            yield number, row


def _read_rows(path: Path, pre: Preprocessor, label_names: list[str] | None, embedder: bool):
    field = "text" if pre.tokenizer is not None else "image" if pre.image_processor is not None else None
    if field is None:
        raise UserError(f"{path}: this model takes raw tensors; give an .npz of ready inputs instead")
    samples, labels, numbers, classes = [], [], [], {}
    for number, row in _rows(path):
        numbers.append(number)
        value = row.get(field)
        if not isinstance(value, str) or not value:
            raise UserError(f'{path}:{number}: needs a "{field}" field holding a non-empty string')
        samples.append(pre.text(value) if field == "text" else pre.image(_open_image(path, number, value)))
        # A decoder is scored on its own next tokens: labels mean nothing to it.
        label = None if pre.task == LM_TASK else row.get("label")
        labels.append(_label(path, number, label, label_names, classes, embedder))
    if not samples:
        raise UserError(f"{path} holds no rows; add lines like " '{"text": "...", "label": "..."}')
    given = [label is not None for label in labels]
    if any(given) and not all(given):
        raise UserError(f"{path}:{numbers[given.index(False)]}: other rows have a label and this one has "
                        "none; label every row or none")
    return samples, np.array(labels, dtype=np.int64) if all(given) else None


def _label(path: Path, number: int, label, label_names, classes: dict, embedder: bool):
    if label is None or label == "":
        return None
    if embedder or not label_names:
        # An embedder's labels are just groups: nearest-neighbour accuracy checks they stay together.
        return classes.setdefault(str(label), len(classes))
    if isinstance(label, int) or (isinstance(label, str) and label.isdigit() and label not in label_names):
        index = int(label)
        if 0 <= index < len(label_names):
            return index
    elif isinstance(label, str) and label in label_names:
        return label_names.index(label)
    raise UserError(f"{path}:{number}: label {label!r} is not one of the model's labels "
                    f"({', '.join(label_names[:10])}{'...' if len(label_names) > 10 else ''}) or an index")


def _open_image(path: Path, number: int, name: str):
    from PIL import Image, UnidentifiedImageError

    image_path = (path.parent / name)
    try:
        return Image.open(image_path)
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"{path}:{number}: cannot read image {name} ({exc.__class__.__name__}); paths are "
                        "relative to the eval file") from None
