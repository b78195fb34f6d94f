#!/usr/bin/env bash
# Receiver CPU for one session of a folder of PNGs, for two commits, interleaved (noise hits both alike).
# Usage: bench/ab_receiver_cpu.sh OLD_REV NEW_REV FOLDER [PAIRS]   (from the repository root, with .venv)
set -euo pipefail
old=$1 new=$2 folder=$(realpath "$3") pairs=${4:-5}
py="$PWD/.venv/bin/python"  # not realpath: the venv is the symlink
work=$(mktemp -d)
trap 'git worktree remove --force "$work/old/latentlink"; git worktree remove --force "$work/new/latentlink"; rm -rf "$work"' EXIT
for side in old new; do
  mkdir -p "$work/$side"
  git worktree add -q "$work/$side/latentlink" "${!side}"  # a folder named latentlink: importable as the package
done
run() {  # prints the receiver's CPU seconds for one session
  "$py" - "$work/$1" "$folder" "$work/out-$1" <<'PY'
import json, os, subprocess, sys
root, folder, out = sys.argv[1:]
boot = f"import sys; sys.path.insert(0, {root!r}); from latentlink.{{}}.cli import main; sys.exit(main())"
receiver = subprocess.Popen([sys.executable, "-c", boot.format("receiver"), "--listen", "127.0.0.1:0", "--out", out,
                             "--models", out + "-models", "--json", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
line = receiver.stdout.readline()
if not line:
    sys.exit(receiver.stderr.read()[-2000:])
address = json.loads(line)["address"]
def cpu():
    fields = open(f"/proc/{receiver.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
before = cpu()
subprocess.run([sys.executable, "-c", boot.format("sender"), "--target", address, "--quiet", folder], check=True,
               capture_output=True)
print(f"{cpu() - before:.2f}")
receiver.terminate()
receiver.wait()
PY
}
printf '| pair | %s receiver CPU s | %s receiver CPU s |\n|---|---|---|\n' "$old" "$new"
for i in $(seq "$pairs"); do
  printf '| %d | %s | %s |\n' "$i" "$(run old)" "$(run new)"
  rm -rf "$work"/out-*
done
