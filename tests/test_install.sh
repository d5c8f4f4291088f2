#!/usr/bin/env bash
# The library as an embedding application sees it: `meson install` into a
# staging folder, then the two example programs of docs/c-api.md, extracted
# from that page itself (the README's C example must be the first of them,
# unchanged), compiled with `pkg-config --cflags --libs segmamba`: the
# forward example run on the tiny fixture model, the pipeline example on a
# phantom case with the demo model, its label map compared byte for byte
# with `segmamba predict`'s.
set -euo pipefail
build=$1
src=$(pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage" --no-rebuild --quiet
pc=$(dirname "$(find "$stage" -name segmamba.pc | head -n 1)")
[ -n "$pc" ] || { echo "segmamba.pc was not installed"; exit 1; }
# The ```c blocks of a Markdown file, in order, as PREFIX1.c, PREFIX2.c, ...
extract_c() {
  awk -v out="$2" '/^```c$/{n++; on=1; next} /^```$/{on=0} on {print > (out n ".c")}' "$1"
}
# docs/c-api.md: the forward example, then the pipeline one.
extract_c "$src/docs/c-api.md" "$stage/example"
[ -s "$stage/example1.c" ] && [ -s "$stage/example2.c" ] && [ ! -e "$stage/example3.c" ] ||
  { echo "docs/c-api.md should hold two C examples"; exit 1; }
# The README's one C example is docs/c-api.md's first, unchanged.
extract_c "$src/README.md" "$stage/readme"
[ -s "$stage/readme1.c" ] && [ ! -e "$stage/readme2.c" ] ||
  { echo "README.md should hold one C example"; exit 1; }
cmp "$stage/readme1.c" "$stage/example1.c" ||
  { echo "README.md's C example differs from docs/c-api.md's first"; exit 1; }
# Point the staged .pc file's prefix at the staging folder.
prefix=$(sed -n 's/^prefix=//p' "$pc/segmamba.pc")
sed -i "s|^prefix=.*|prefix=$stage$prefix|" "$pc/segmamba.pc"
flags=$(PKG_CONFIG_PATH="$pc" pkg-config --cflags --libs segmamba)
echo "pkg-config: $flags"
cc -std=c11 -Wall -Wextra -Werror "$stage/example1.c" $flags -o "$stage/example"
cc -std=c11 -Wall -Wextra -Werror "$stage/example2.c" $flags -o "$stage/segment"
libdir=$(dirname "$(find "$stage" -name 'libsegmamba.so' | head -n 1)")
# The shared library exports the public API and nothing else.
others=$(nm -D --defined-only "$libdir/libsegmamba.so" | awk '$2 ~ /^[A-Z]$/ && $3 !~ /^segmamba_/ {print $3}')
[ -z "$others" ] || { echo "libsegmamba.so exports internal symbols:"; echo "$others"; exit 1; }
echo "exports: $(nm -D --defined-only "$libdir/libsegmamba.so" | awk '$3 ~ /^segmamba_/' | wc -l) segmamba_* symbols, nothing else"
# The Orthanc plugin, in a build that has it: beside the library, which it
# finds there (RUNPATH $ORIGIN), exporting Orthanc's four entry points only.
if [ -n "$(find "$build" -name 'libOrthancSegMamba.so' | head -n 1)" ]; then
  plugin=$libdir/libOrthancSegMamba.so
  [ -f "$plugin" ] || { echo "libOrthancSegMamba.so is not installed beside libsegmamba.so"; exit 1; }
  entry=$(nm -D --defined-only "$plugin" | awk '$2 ~ /^[A-Z]$/ {print $3}' | sort | tr '\n' ' ')
  [ "$entry" = "OrthancPluginFinalize OrthancPluginGetName OrthancPluginGetVersion OrthancPluginInitialize " ] ||
    { echo "libOrthancSegMamba.so exports: $entry"; exit 1; }
  found=$(env -u LD_LIBRARY_PATH ldd "$plugin" | awk '$1 == "libsegmamba.so.0" {print $3}')
  [ "$(realpath "$found")" = "$(realpath "$libdir/libsegmamba.so.0")" ] ||
    { echo "libOrthancSegMamba.so finds libsegmamba.so.0 at '$found', not beside it"; exit 1; }
  echo "Orthanc plugin: installed beside the library, which it finds there"
fi
# The tiny model at 128^3 with its default nslices (64,32,16,8) divides.
LD_LIBRARY_PATH="$libdir" OMP_NUM_THREADS=2 "$stage/example" "$src/tests/fixtures/tiny/model.safetensors"
echo "example ran"
# The pipeline example against the CLI on the same study (no TTA: 1/8 of
# the time, the same code path otherwise).
/usr/bin/python3 "$src/tools/phantom.py" --out "$stage/case" --cases 1 --seed 7 --start 0 >/dev/null
case_dir=$(find "$stage/case" -mindepth 1 -maxdepth 1 -type d | head -n 1)
id=$(basename "$case_dir")
images=("$case_dir/$id-t2w.nii.gz" "$case_dir/$id-t2f.nii.gz" "$case_dir/$id-t1n.nii.gz"
        "$case_dir/$id-t1c.nii.gz")
model="$src/models/demo/segmamba_demo.safetensors"
LD_LIBRARY_PATH="$libdir" OMP_NUM_THREADS=2 "$stage/segment" --no-tta "$model" "$stage/api.nii.gz" \
  "${images[@]}"
OMP_NUM_THREADS=2 "$build/segmamba" predict --quiet --no-tta --model "$model" -i "${images[@]}" \
  -o "$stage/cli.nii.gz"
cmp "$stage/api.nii.gz" "$stage/cli.nii.gz"
echo "pipeline example: the same label map as segmamba predict"
