"""`make gpu-check`: the CUDA path proven on a GPU machine in one command (README, "CUDA").

Runs with the machine's own python3 and a folder of carried wheels (``make gpu-wheels``), never the
project's venv: ``bootstrap`` makes ``atento`` importable from this checkout. Without CUDA it runs
its CPU-only parts, writes their rows, says so in one line and exits 3 (tests/test_gpu_check.py).
"""
