"""Pure parts of the process runtime: instance names, ports and program files."""

from __future__ import annotations

from ansible.module_utils.nself.process import ProcessRuntime
from ansible.module_utils.nself.runtime import ServiceDefinition


def api_definition() -> ServiceDefinition:
    return ServiceDefinition(
        name="api",
        command=["/srv/venv/bin/gunicorn", "--bind", "127.0.0.1:{port}", "a b"],
        replicable=True,
        port_base=18100,
        env={"NSELF_API_BIND": "127.0.0.1:{port}", "QUOTED": 'say "hi" 100%'},
        user="nself",
    )


def test_replicas_get_consecutive_names_and_ports():
    definition = api_definition()
    assert definition.instance_names(3) == ["api_1", "api_2", "api_3"]
    assert [definition.endpoint_of(i) for i in definition.instance_names(2)] == [
        "127.0.0.1:18101",
        "127.0.0.1:18102",
    ]


def test_singleton_has_its_own_name_and_port():
    definition = ServiceDefinition(name="redis", command=["redis-server"], port=16379)
    assert definition.instance_names(1) == ["redis"]
    assert definition.endpoint_of("redis") == "127.0.0.1:16379"


def test_program_file_quotes_arguments_and_environment(tmp_path):
    runtime = ProcessRuntime(str(tmp_path), "local")
    text = runtime.render_program(api_definition(), "api_2")
    assert "[program:api_2]" in text
    command = next(x for x in text.splitlines() if x.startswith("command="))
    # The launcher comes first, then the program itself, every argument quoted.
    assert "nself-launch --state-dir %s --env local" % tmp_path in command
    assert "--service api --instance api_2 --user nself --" in command
    assert command.endswith("-- /srv/venv/bin/gunicorn --bind 127.0.0.1:18102 'a b'")
    assert 'NSELF_API_BIND="127.0.0.1:18102"' in text
    assert 'NSELF_REPLICA="api_2"' in text
    # supervisor expands %(name)s and ends a value at a bare quote: both are escaped.
    assert 'QUOTED="say \\"hi\\" 100%%"' in text
    # The launcher drops to the service account; supervisor itself does not.
    assert "\nuser=" not in text


def test_definition_round_trips_through_json():
    definition = api_definition()
    import json

    assert ServiceDefinition.from_dict(json.loads(definition.to_json())) == definition
