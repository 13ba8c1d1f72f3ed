from setuptools import find_packages, setup

setup(
    name="minicnn",
    version="0.1.0",
    description="From-scratch NumPy/CuPy ConvNet engine for seeing inside image classifiers "
                "(Simonyan, Vedaldi & Zisserman 2013)",
    packages=find_packages(include=["minicnn", "minicnn.*"]),
    package_data={"minicnn": ["data/*", "explore/static/*"]},
    python_requires=">=3.9",
    install_requires=[
        "numpy>=1.25",
        "h5py>=3.0",
        "pillow>=9.0",
        "tqdm>=4.60",
        "scipy>=1.8",
        "scikit-learn>=1.1",
        "PyMaxflow>=1.3",
        "matplotlib>=3.5",
        "threadpoolctl>=3.0",
        "defusedxml>=0.7",
        "scikit-image>=0.19",
    ],
    entry_points={"console_scripts": [
        "minicnn-saliency = minicnn.commands.saliency:entry",
        "minicnn-localize = minicnn.commands.localize:entry",
        "minicnn-deconv = minicnn.commands.deconv:entry",
        "minicnn-class-model = minicnn.commands.class_model:entry",
        "minicnn-info = minicnn.commands.info:entry",
        "minicnn-convert = minicnn.commands.convert_weights:entry",
        "minicnn-train = minicnn.commands.train:entry",
        "minicnn-bench = minicnn.commands.bench:entry",
        "minicnn-bench-photos = minicnn.commands.bench_photos:entry",
        "minicnn-explore = minicnn.commands.explore:entry",
        "minicnn-evaluate = minicnn.commands.evaluate:entry",
    ]},
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6.50", "dask[distributed]>=2024.1",
                 "flask>=2.3", "selenium>=4.11"],
        # tools/explore.py: the web page (Flask serves it; the engine does not need it)
        "explore": ["flask>=2.3"],
        "gpu": ["cupy-cuda12x"],
        "dask": ["dask[distributed]>=2024.1"],
    },
)
