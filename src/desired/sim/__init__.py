"""The instrument simulator behind ``desired simulate``: raw DESI nights with truth.

Modules: :mod:`.instrument` (presets, CCD and amplifier geometry), :mod:`.arclines`
(lamp line lists), :mod:`.optics` (true traces and Gauss-Hermite PSF per camera),
:mod:`.targets` (sky, galaxy, quasar and star spectra), :mod:`.detector` (electrons
to raw ADU), :mod:`.night` (orchestration and file writing), :mod:`.frames`
(frame-level mode).
"""
