"""The `nself` command: what nself users type, mapped onto the Invoke tasks.

One rule, no list of exceptions: the longest run of leading words that, joined by `-`,
names a task is the task (`scale out` is `scale-out`); the words after it are that
task's arguments, and bare words among them fill the task's positional parameters in
order (`nself scale out api --replicas 3` runs `scale-out --service api --replicas 3`).
Tasks added to tasks.py appear here by themselves.
"""

from __future__ import annotations

import importlib.util
import sys

from invoke import Collection, Program

from nself_ops import PROJECT_DIR


def load_tasks() -> Collection:
    spec = importlib.util.spec_from_file_location("tasks", PROJECT_DIR / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(PROJECT_DIR))
    spec.loader.exec_module(module)
    return Collection.from_module(module)


def translate(words: list[str], collection: Collection) -> list[str]:
    """Invoke's argv for nself words; raises ValueError for words naming no task."""
    names = set(collection.task_names)
    for aliases in collection.task_names.values():
        names.update(aliases)
    leading = []
    for word in words:
        if word.startswith("-"):
            break
        leading.append(word)
    for count in range(len(leading), 0, -1):
        name = "-".join(leading[:count])
        if name in names:
            break
    else:
        valid = sorted(collection.task_names)
        raise ValueError(
            "no command %r; valid commands: %s"
            % (" ".join(leading) or " ".join(words), ", ".join(valid))
        )
    task = collection[name]
    rest = words[count:]
    # A task whose positional word is optional for nself (`nself scale status [api]`)
    # declares it as `nself_positional`; Invoke itself would make it required.
    names_in_order = task.positional or getattr(task.body, "nself_positional", [])
    positional = [arg.replace("_", "-") for arg in names_in_order]
    flags_taking_values = _flags_with_values(task)
    argv, index = [name], 0
    i = 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("-"):
            argv.append(word)
            if word in flags_taking_values and "=" not in word and i + 1 < len(rest):
                argv.append(rest[i + 1])
                i += 1
        elif index < len(positional):
            argv += ["--" + positional[index], word]
            index += 1
        else:
            raise ValueError(
                "unexpected argument %r for %s (it takes %s)"
                % (word, " ".join(name.split("-")), _describe(positional))
            )
        i += 1
    return argv


def _describe(positional: list[str]) -> str:
    if not positional:
        return "no positional arguments"
    return "positional arguments: " + ", ".join(positional)


def _flags_with_values(task) -> set[str]:
    flags = set()
    for arg in task.get_arguments():
        if arg.takes_value:
            for name in arg.names:
                flags.add(("--" if len(name) > 1 else "-") + name.replace("_", "-"))
    return flags


def main(argv: list[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    collection = load_tasks()
    program = Program(namespace=collection, name="nself", binary="nself")
    if not words or words[0] in ("-h", "--help", "-l", "--list", "--version", "-V"):
        program.run(["nself"] + (words or ["--list"]))
        return 0
    try:
        translated = translate(words, collection)
    except ValueError as exc:
        print("Error: %s" % exc, file=sys.stderr)
        return 2
    program.run(["nself"] + translated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
