"""python -m segmamba bench MODEL [options]: `segmamba bench` from Python
(python -m segmamba bench --help); python -m segmamba version: the build."""
import sys


def main(argv):
    if len(argv) >= 1 and argv[0] == "bench":
        from ._bench import main as bench
        return bench(argv[1:])
    if len(argv) >= 1 and argv[0] == "version":
        from . import build_info
        for k, v in build_info().items():
            print(f"{k}: {v}")
        return 0
    print("usage: python -m segmamba bench MODEL [--size N] [--threads N] [--repeat R] "
          "[--conv K] [--backend cpu|cuda] [--precision P] [--json F]\n"
          "       python -m segmamba version", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
