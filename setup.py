"""xling_zoo: a Keras model zoo for cross-lingual transfer learning."""

import setuptools

# The CTranslate2 export (python -m xling_zoo.export --format=ctranslate2); tested with 4.8.5.
CTRANSLATE2 = "ctranslate2>=4.8,<5"

setuptools.setup(
    name="xling_zoo",
    version="0.1.0",
    description="Keras model zoo for cross-lingual transfer learning (parent -> child language pairs).",
    packages=setuptools.find_packages(include=["xling_zoo", "xling_zoo.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow==2.21.0",
        "tensorflow-text==2.21.1",
        "keras==3.15.1",
        "keras-hub==0.32.0",
        "tensorflow-datasets==4.9.10",
        # tensorflow-datasets needs it to prepare datasets on Python 3.11 but does not declare it.
        "importlib_resources",
        "sacrebleu==2.6.0",
        "tensorboard==2.21.0",
        "sentencepiece==0.2.3",
        "absl-py",
        "ml_collections",
        "polib",
    ],
    extras_require={
        "ctranslate2": [CTRANSLATE2],
        "test": ["pytest", "pytest-xdist", "matplotlib", CTRANSLATE2],
    },
)
