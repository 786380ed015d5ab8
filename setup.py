"""The one C extension: the grey-scale display of 16-bit frames, linear window
and table look-up (everything else is in pyproject.toml). ``pip install -e .``
builds it next to its source; ``dicom_service.render.lut`` falls back to numpy,
with the same values, where it is not built."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dicom_service.render._window",
            ["dicom_service/render/_window.c"],
            # no fused multiply-add: the values must be numpy's, bit for bit
            extra_compile_args=["-O2", "-ffp-contract=off"],
            libraries=["m"],
            # no C compiler: install anyway, lut.py windows with numpy (and says so)
            optional=True,
        )
    ]
)
