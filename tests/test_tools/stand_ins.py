"""Stand-ins for the programs a launcher starts (``srun``, ``python``): they
record their arguments and start nothing."""
import json
import os
import sys


def stand_in(folder, name: str):
    """An executable ``folder/name`` that writes its arguments, as a JSON
    list, to ``folder/name.json``. Returns the path of that record (absent
    until the stand-in runs)."""
    os.makedirs(folder, exist_ok=True)
    record = folder / f'{name}.json'
    script = folder / name
    script.write_text(f'#!{sys.executable}\nimport json, sys\n'
                      f'json.dump(sys.argv[1:], open({str(record)!r}, "w"))\n')
    script.chmod(0o755)
    return record


def recorded(record) -> list:
    with open(record) as f:
        return json.load(f)
