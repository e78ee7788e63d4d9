"""The paper's numbers shipped with the package stay identical to the reference transcription."""

from road_repro.report.summary import paper_tables


def test_shipped_reference_equals_shared_reference(shared_data):
    shared = shared_data.parent / "reference" / "paper_tables.csv"
    from importlib import resources

    shipped = resources.files("road_repro.report").joinpath("paper_tables.csv").read_text()
    assert shipped == shared.read_text()


def test_reference_has_every_table():
    tables = set(paper_tables()["table"])
    assert {"T2", "T3", "T4", "T5", "T6", "T7", "B41", "B42", "B43", "B51", "B6", "B6b"} <= tables
    t5 = paper_tables().query("table == 'T5' and method == 'weighted KD' and metric == 'f1'")
    assert t5["value"].item() == 91.52
