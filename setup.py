"""Build hook: the package layout and the optional C accelerator; metadata lives in pyproject.toml.

The four folders of the house (agent, collectors, quota, uplink) install as one package, ``kuat.*``,
never as top-level names: ``uplink`` is another project's name on PyPI, and installing kuat must not
overwrite it. Every subpackage (a folder with ``__init__.py``) under them is found here, so a
new one needs no edit.

``optional=True``: where there is no C compiler the build of ``kuat.uplink._lpaccel`` is skipped
with a warning and kuat installs anyway, encoding with the pure-Python path (same output).
"""

from setuptools import Extension, find_packages, setup

FOLDERS = ("agent", "collectors", "quota", "uplink")

setup(
    packages=[
        f"kuat.{pkg}" for pkg in find_packages(include=[*FOLDERS, *(f"{top}.*" for top in FOLDERS)])
    ],
    package_dir={f"kuat.{top}": top for top in FOLDERS},
    ext_modules=[
        Extension(
            "kuat.uplink._lpaccel",
            ["uplink/_lpaccel.c"],
            optional=True,
        )
    ],
)
