#!/usr/bin/env bash
# The library as an embedding application sees it: `meson install` into a
# staging folder, then the README's example program, extracted from the
# README itself, compiled with `pkg-config --cflags --libs segmamba` and run
# on the tiny fixture model.
set -euo pipefail
build=$1
src=$(pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage" --no-rebuild --quiet
pc=$(dirname "$(find "$stage" -name segmamba.pc | head -n 1)")
[ -n "$pc" ] || { echo "segmamba.pc was not installed"; exit 1; }
# The first ```c block of the README is the example.
awk '/^```c$/{on=1; next} /^```$/{if(on) exit} on' "$src/README.md" > "$stage/example.c"
[ -s "$stage/example.c" ] || { echo "no C example found in README.md"; exit 1; }
# Point the staged .pc file's prefix at the staging folder.
prefix=$(sed -n 's/^prefix=//p' "$pc/segmamba.pc")
sed -i "s|^prefix=.*|prefix=$stage$prefix|" "$pc/segmamba.pc"
flags=$(PKG_CONFIG_PATH="$pc" pkg-config --cflags --libs segmamba)
echo "pkg-config: $flags"
cc -std=c11 -Wall -Wextra -Werror "$stage/example.c" $flags -o "$stage/example"
libdir=$(dirname "$(find "$stage" -name 'libsegmamba.so' | head -n 1)")
# The shared library exports the public API and nothing else.
others=$(nm -D --defined-only "$libdir/libsegmamba.so" | awk '$2 ~ /^[A-Z]$/ && $3 !~ /^segmamba_/ {print $3}')
[ -z "$others" ] || { echo "libsegmamba.so exports internal symbols:"; echo "$others"; exit 1; }
echo "exports: $(nm -D --defined-only "$libdir/libsegmamba.so" | awk '$3 ~ /^segmamba_/' | wc -l) segmamba_* symbols, nothing else"
# The tiny model at 128^3 with its default nslices (64,32,16,8) divides.
LD_LIBRARY_PATH="$libdir" OMP_NUM_THREADS=2 "$stage/example" "$src/tests/fixtures/tiny/model.safetensors"
echo "example ran"
