"""Build hook for the optional C accelerator; all metadata lives in pyproject.toml.

``optional=True``: where there is no C compiler the build of ``uplink._lpaccel`` is skipped
with a warning and kuat installs anyway, encoding with the pure-Python path (same output).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "uplink._lpaccel",
            ["uplink/_lpaccel.c"],
            optional=True,
        )
    ]
)
