"""Class selection against the real class index and ontology."""

import pytest

from audiosetdl.metadata.ontology import ClassIndex, ClassSelectionError, Ontology, select_classes


@pytest.fixture(scope="module")
def meta(shared_audioset):
    return ClassIndex.load(shared_audioset / "class_labels_indices.csv"), Ontology.load(shared_audioset / "ontology.json")


def test_index_and_ontology_load(meta):
    index, ontology = meta
    assert len(index) == 527 and index.mids[0] == "/m/09x0r" and index.names[0] == "Speech"
    assert index.index_of["/m/0l15bq"] == index.names.index("Clapping")
    assert len(ontology.entries) == 632


def test_names_and_mids_case_insensitive(meta):
    index, ontology = meta
    for query in ("Clapping", "clapping", "CLAPPING", "/m/0l15bq"):
        assert select_classes([query], index=index, ontology=ontology).include == {"/m/0l15bq"}


def test_descendants_of_gunshot(meta):
    index, ontology = meta
    plain = select_classes(["Gunshot, gunfire"], index=index, ontology=ontology)
    assert plain.include == {"/m/032s66"}
    expanded = select_classes(["Gunshot, gunfire"], index=index, ontology=ontology, with_descendants=True)
    names = {ontology.entries[m].name for m in expanded.include}
    assert names == {"Gunshot, gunfire", "Machine gun", "Fusillade", "Artillery fire", "Cap gun"}


def test_miss_suggests_close_names(meta):
    index, ontology = meta
    with pytest.raises(ClassSelectionError, match=r"unknown class 'Gunshot'.*Did you mean.*'Gunshot, gunfire'"):
        select_classes(["Gunshot"], index=index, ontology=ontology)
    with pytest.raises(ClassSelectionError, match=r"'Clapping'"):
        select_classes(["Clappin"], index=index, ontology=ontology)


def test_abstract_and_unlabelled_classes_are_reported(meta):
    index, ontology = meta
    selection = select_classes(["Human sounds"], index=index, ontology=ontology)
    assert any("abstract" in note and "--with-descendants" in note for note in selection.notes)
    assert any("no labelled segments" in note for note in selection.notes)
    blacklisted = next(e for e in ontology.entries.values() if e.blacklisted)
    assert any("blacklisted" in n for n in select_classes([blacklisted.name], index=index, ontology=ontology).notes)


def test_exclusions_remove_classes_and_their_children(meta):
    index, ontology = meta
    selection = select_classes(["Gunshot, gunfire"], ["Cap gun"], index=index, ontology=ontology,
                               with_descendants=True)
    assert "/m/073cg4" not in selection.include and "/m/073cg4" in selection.exclude
    assert select_classes([], ["Speech"], index=index, ontology=ontology).include is None
    with pytest.raises(ClassSelectionError, match="empty after exclusions"):
        select_classes(["Clapping"], ["Clapping"], index=index, ontology=ontology)


def test_selection_without_metadata_says_what_to_run():
    with pytest.raises(ClassSelectionError, match="fetch-metadata"):
        select_classes(["Clapping"], index=None, ontology=None)
