"""Make lerobot 0.6.1 (Requires-Python>=3.12) importable on Python 3.11 by rewriting its 3.12-only syntax
(PEP 695 type parameters / `type` aliases) in the installed copy, and guard torchvision 0.28's unconditional
fake-op registration (its PyPI wheel's C ops are CUDA-linked and do not load with the +cpu torch wheel).
Idempotent; make_venv.sh runs it with the venv's python."""
import pathlib, re, site

sp = pathlib.Path(site.getsitepackages()[0])
L = sp / "lerobot"
edits = {
    L / "motors/motors_bus.py": [(r"^type (\w+) = ", r"\1 = ")],
    L / "datasets/aggregate.py": [(r"^type (\w+) = ", r"\1 = ")],
    L / "utils/io_utils.py": [(r"def deserialize_json_into_object\[T: JsonLike\]\(fpath: Path, obj: T\) -> T:",
                               "def deserialize_json_into_object(fpath: Path, obj: JsonLike) -> JsonLike:")],
    L / "datasets/streaming_dataset.py": [(r"^class Backtrackable\[T\]:",
                                           "import typing as _t\nT = _t.TypeVar(\"T\")\n\n\nclass Backtrackable(_t.Generic[T]):")],
    L / "processor/pipeline.py": [(r"^class DataProcessorPipeline\[TInput, TOutput\]\(HubMixin\):",
                                   "class DataProcessorPipeline(HubMixin, __import__(\"typing\").Generic[TInput, TOutput]):")],
    sp / "torchvision/_meta_registrations.py": [(r'^@torch\.library\.register_fake\("torchvision::(q?nms)"\)$',
                                                 r'@(torch.library.register_fake("torchvision::\1") if torchvision.extension._has_ops() else (lambda f: f))')],
}
for path, subs in edits.items():
    text = path.read_text()
    for pat, rep in subs:
        text = re.sub(pat, rep, text, flags=re.M)
    path.write_text(text)
bad = []
for p in sorted(L.rglob("*.py")):
    try:
        compile(p.read_text(), str(p), "exec")
    except SyntaxError as e:
        bad.append(f"{p}:{e.lineno}: {e.msg}")
print("lerobot files that still do not compile on this Python:", bad or "none")
