#!/bin/bash
# usage: [SRC=/path/src] cg.sh SCENARIO [tag] -> instructions per message (diff of iters 4 and 1)
s=$1; tag=${2:-x}; src=${SRC:-/work/main/src}
msgs=$(cd /work/main && PYNATSD_SRC=$src .venv/bin/python -c '
import sys,asyncio; sys.path.insert(0,"/work/notes"); import speed_micro as m
print(m.build(sys.argv[1], asyncio.new_event_loop())[1])' $s)
run() { PYNATSD_SRC=$src valgrind --tool=callgrind --callgrind-out-file=/tmp/speed/cg.$tag.$s.$1 /work/main/.venv/bin/python /work/notes/speed_micro.py --once $s --iters $1 2>&1 | grep Collected | awk '{print $4}'; }
a=$(run 1); b=$(run 4)
echo "$s $tag $(( (b - a) / 3 / msgs )) instr/msg"
