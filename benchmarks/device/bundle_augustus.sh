#!/bin/bash
# Copy this machine's AUGUSTUS (Debian package `augustus`) into a folder that runs on another
# Linux host without it: the binary, its libraries other than the C/C++ runtime, the fly and
# generic parameters, and a wrapper `bin/augustus` that points them at each other (16 MB).
# Session 13 carried it to the GPU machine to time AUGUSTUS on the same host as genoseg
# (benchmarks/device/annotate_speed_gpu.sh).
#
#     bash benchmarks/device/bundle_augustus.sh runs/aug
set -euo pipefail
out=${1:?usage: bundle_augustus.sh OUT_DIR}
src=$(command -v augustus) || { echo "augustus is not installed (apt-get install augustus)" >&2; exit 1; }
config=/usr/share/augustus/config
rm -rf "$out" && mkdir -p "$out/bin" "$out/lib" "$out/config/species"
cp "$src" "$out/bin/augustus.real"
for lib in $(ldd "$src" | awk '$3 ~ /^\// {print $3}'); do
  case $(basename "$lib") in
    libc.so*|libm.so*|libstdc++*|libgcc_s*|libpthread*|libdl*|librt*) ;;  # the host's own
    *) cp -L "$lib" "$out/lib/" ;;
  esac
done
cp -r "$config"/{model,extrinsic,parameters,profile,cgp} "$out/config/"
cp -r "$config"/species/{fly,generic} "$out/config/species/"
cat > "$out/bin/augustus" <<'WRAP'
#!/bin/sh
d=$(dirname "$(readlink -f "$0")")/..
LD_LIBRARY_PATH=$d/lib AUGUSTUS_CONFIG_PATH=$d/config exec "$d/bin/augustus.real" "$@"
WRAP
chmod +x "$out/bin/augustus"
du -sh "$out"
