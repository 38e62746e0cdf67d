"""The package layout, which pyproject.toml cannot say alone: everything under src/, and the
repository's collector-config/ as package data inside the package (``tokentrail/_stack`` in the
wheel), which ``tokentrail stack init DIR`` writes out. Everything else is in pyproject.toml."""

from setuptools import find_namespace_packages, find_packages, setup

# Every file of collector-config/, whatever its folder is called (the glob); its folders are named as
# packages too only because setuptools warns about importable-looking folders that are not.
STACK = "tokentrail._stack"
setup(
    packages=[
        *find_packages("src"),
        STACK,
        *(f"{STACK}.{name}" for name in find_namespace_packages("collector-config")),
    ],
    package_dir={"": "src", STACK: "collector-config"},
    package_data={"tokentrail": ["py.typed", "dashboard/static/*"], STACK: ["**/*"]},
)
