"""Packaging for shardguard.

The fixed top-level folders ``pipelines/``, ``transforms/`` and ``indexes/`` are installed as the
subpackages ``shardguard.pipelines``, ``shardguard.transforms`` and ``shardguard.indexes`` (``shardguard``
itself is a PEP 420 namespace), so the repository keeps its layout and nothing generic such as a
top-level ``pipelines`` module lands in site-packages. This same file is what Dataflow's
``--setup_file ./setup.py`` uses to stage the code on workers.

Two small C extensions, plain CPython API, no numpy headers: the multi-index Hamming search loop
(indexes/_mihext.c) and PDQ hashing bit-identical to pdqhash but ~7× faster (indexes/_pdqext.c).
Both are optional: where they cannot be compiled the install still succeeds and the index falls
back to the same algorithm in numpy (~10× slower), PDQ to the pdqhash package, so a worker image
without a compiler still scans correctly, with the same results.
"""
import platform

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# POPCNT is on every x86-64 CPU since 2008; without the flag gcc calls a slow software popcount.
_ARCH_FLAGS = ["-mpopcnt"] if platform.machine().lower() in ("x86_64", "amd64") else []


class OptionalBuildExt(build_ext):
    """Build the extension when a compiler is there; otherwise warn and install pure Python."""

    def run(self):
        """Build the extensions that can be built."""
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure means "use the numpy path"
            print(f"WARNING: shardguard C extension not built ({exc}); using the numpy search path")

    def build_extension(self, ext):
        """Build one extension, or warn and leave it out."""
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"WARNING: {ext.name} not built ({exc}); using the pure-Python fallback")

VERSION = "0.1.0"

setup(
    name="shardguard",
    version=VERSION,
    description="Curation and contamination scanning for image-text training data (Apache Beam).",
    python_requires=">=3.10",
    packages=["shardguard.pipelines", "shardguard.transforms", "shardguard.indexes"],
    package_dir={
        "shardguard.pipelines": "pipelines",
        "shardguard.transforms": "transforms",
        "shardguard.indexes": "indexes",
    },
    install_requires=[
        "apache-beam>=2.60,<3",
        "numpy>=2.0,<2.5",
        "pyarrow>=14,<26",
        "pillow>=10,<13",
        "imagehash>=4.3",
        "scipy>=1.10",
        "pdqhash>=0.2.8",
        "faiss-cpu>=1.8",
        "PyYAML>=6",
        "torch>=2.1",
        "open-clip-torch>=2.24",
        "safetensors>=0.4",
        "threadpoolctl>=3.1",
        "simplejpeg>=1.8",  # fast mode's luma-plane JPEG decode (transforms/jpegluma.py)
    ],
    extras_require={
        "gpu": ["faiss-gpu-cu12"],
        "dataflow": ["apache-beam[gcp]", "build"],
        "s3": ["apache-beam[aws]"],
        # test tools, plus what the Dataflow dry-run, S3 and img2dataset tests need
        "dev": ["pytest>=8", "pytest-timeout", "hypothesis>=6", "img2dataset==1.47.0", "ruff>=0.6",
                "apache-beam[gcp,aws]", "moto[server]>=5"],
    },
    ext_modules=[Extension("shardguard.indexes._mihext", ["indexes/_mihext.c"],
                           extra_compile_args=["-O3", *_ARCH_FLAGS]),
                 # no fused multiply-adds: PDQ must round exactly as the reference's separate ops
                 Extension("shardguard.indexes._pdqext", ["indexes/_pdqext.c"],
                           extra_compile_args=["-O3", "-ffp-contract=off"])],
    cmdclass={"build_ext": OptionalBuildExt},
    entry_points={"console_scripts": ["shardguard=shardguard.pipelines.cli:console"]},
)
