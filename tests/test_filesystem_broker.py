from kombu import Connection

from heritage_site.filesystem_broker import install


# kombu keeps exchange bindings in a process-wide state, so each test
# uses its own queue name.
def _connection(folder):
    (folder / "control").mkdir(exist_ok=True)
    return Connection(
        "filesystem://",
        transport_options={
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(folder / "control"),
        },
    )


def test_filesystem_broker_skips_empty_message(tmp_path):
    install()
    (tmp_path / "0_00000000-0000-0000-0000-000000000000.jobs.msg").write_bytes(b"")

    with _connection(tmp_path) as connection:
        queue = connection.SimpleQueue("jobs")
        queue.put({"prediction": 7})
        message = queue.get(timeout=2)

        assert message.payload == {"prediction": 7}
        message.ack()
        queue.close()


def test_filesystem_broker_leaves_no_partial_files(tmp_path):
    install()

    with _connection(tmp_path) as connection:
        queue = connection.SimpleQueue("uploads")
        queue.put({"prediction": 8})
        message = queue.get(timeout=2)
        message.ack()
        queue.close()

    assert message.payload == {"prediction": 8}
    assert not [path.name for path in tmp_path.iterdir() if path.is_file()]
