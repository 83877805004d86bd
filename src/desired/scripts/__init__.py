"""Command-line front ends: each module offers ``add_arguments(parser)`` and ``main(args)``."""
