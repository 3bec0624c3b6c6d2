from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visionclip.knowledge import load_knowledge_base
from visionclip.presets import load_preset
from visionclip.zeroshot.data import from_csv, from_folder, load_eval_dataset
from visionclip.zeroshot.tasks import (
    ABSENT,
    PRESENT,
    ZeroShotTask,
    finding_tasks,
    list_tasks,
    load_task,
    recommended_tasks,
)

COLUMNS = {"file": "file", "label": "label", "split": "split", "fold": "fold", "group": "patient", "image": "image"}


def test_every_shipped_task_loads_with_prompt_ensembles():
    assert {"hrf", "csdi", "idrid_grading", "aptos", "messidor2", "refuge", "papila", "odir"} <= set(list_tasks())
    for name in list_tasks():
        task = load_task(name)
        assert len(task.labels) >= 2 and all(len(p) >= 3 for p in task.prompts), name
    assert load_task("csdi").ordinal and not load_task("hrf").ordinal
    assert load_task("idrid_grading").index(3.0) == 3  # CSV readers may give floats


def test_user_task_file_with_literal_prompts(tmp_path):
    spec = tmp_path / "cataract.yaml"
    spec.write_text("ordinal: false\nclasses:\n  cataract: {prompts: [a cataract]}\n  clear: [normal]\n")
    task = load_task(str(spec))
    assert task.labels == ("cataract", "clear") and task.prompts[0] == ("a cataract",)
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes:\n  a: [no_such_concept]\n  b: [normal]\n")
    with pytest.raises(ValueError, match="unknown concept 'no_such_concept'"):
        load_task(str(bad))
    with pytest.raises(ValueError, match="Unknown task 'messidor'"):
        load_task("messidor")


def _image(path, value=120):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32, 3), value, dtype=np.uint8)).save(path)


def test_folder_and_csv_sources(tmp_path):
    task = load_task("refuge")
    for label in ("glaucoma", "non_glaucoma"):
        for i in range(3):
            _image(tmp_path / "folder" / label / f"{i}.png")
    dataset = from_folder(tmp_path / "folder", task, "refuge")
    assert sorted(item.label for item in dataset.items) == [0, 0, 0, 1, 1, 1]
    (tmp_path / "folder" / "suspect").mkdir()
    with pytest.raises(ValueError, match=r"subfolders \['suspect'\] are not classes"):
        from_folder(tmp_path / "folder", task, "refuge")

    _image(tmp_path / "csv" / "images" / "a.png")
    labels = tmp_path / "csv" / "labels.csv"
    labels.write_text("file,label,split,fold\nimages/a.png,glaucoma,test,1\n")
    item = from_csv(labels, task, "refuge", COLUMNS).items[0]
    assert (item.label, item.split, item.fold, item.image) == (1, "test", 1, tmp_path / "csv" / "images" / "a.png")
    labels.write_text("file,label\nimages/a.png,cataract\n")
    with pytest.raises(ValueError, match="row 2: label 'cataract' is not a class of task 'refuge'"):
        from_csv(labels, task, "refuge", COLUMNS)
    labels.write_text("path,label\nimages/a.png,glaucoma\n")
    with pytest.raises(ValueError, match="no file column 'file'"):
        from_csv(labels, task, "refuge", COLUMNS)
    labels.write_text("file,label\n")
    with pytest.raises(ValueError, match="holds no images"):
        from_csv(labels, task, "refuge", COLUMNS)
    with pytest.raises(FileNotFoundError, match="CSV file not found"):
        load_eval_dataset(str(tmp_path / "missing.csv"), task, "x", COLUMNS)


def test_synthetic_source_matches_task_conditions(tmp_path):
    dataset = load_eval_dataset("synthetic", load_task("refuge"), "refuge (synthetic)", COLUMNS, synthetic_count=12)
    assert len(dataset.items) == 12
    haze = load_eval_dataset("synthetic", load_task("csdi"), "csdi (synthetic)", COLUMNS, synthetic_count=8)
    assert {item.label for item in haze.items} <= set(range(4)) and len(haze.items) == 8
    spec = tmp_path / "no_synthetic.yaml"
    spec.write_text('classes:\n  no glaucoma: ["glaucoma:absent", normal]\n  glaucoma: [glaucoma]\n')
    with pytest.raises(ValueError, match="no 'synthetic' label conditions"):
        load_eval_dataset("synthetic", load_task(str(spec)), "no_synthetic", COLUMNS)


def test_one_task_type_from_the_knowledge_base_a_yaml_file_and_a_saved_config(tmp_path):
    recommended = recommended_tasks()
    glaucoma = recommended["glaucoma"]
    spec = tmp_path / "glaucoma.yaml"
    spec.write_text('classes:\n  no glaucoma: ["glaucoma:absent", normal]\n  glaucoma: [glaucoma]\n')
    from_file = load_task(str(spec))
    assert type(from_file) is type(glaucoma) and from_file.prompts == glaucoma.prompts
    saved = load_preset("tiny").build_config().zero_shot_tasks
    assert saved == {name: task.to_config() for name, task in recommended.items()}
    again = ZeroShotTask.from_config("glaucoma", saved["glaucoma"])
    assert (again.labels, again.prompts, again.ordinal) == (glaucoma.labels, glaucoma.prompts, glaucoma.ordinal)


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ("  a: [glaucoma:present]\n  b: [normal]\n", "only ':absent' is allowed"),
        ("  a: [normal:absent]\n  b: [glaucoma]\n", "concept 'normal' has no absent phrases"),
    ],
)
def test_a_task_file_refers_only_to_phrases_the_knowledge_base_has(tmp_path, classes, message):
    spec = tmp_path / "task.yaml"
    spec.write_text(f"classes:\n{classes}")
    with pytest.raises(ValueError, match=message):
        load_task(str(spec))


def test_finding_questions_split_records_at_their_threshold():
    questions = {task.name: task for task in finding_tasks()}
    assert {"diabetic_retinopathy", "referable_dr", "glaucoma"} <= set(questions)
    referable = questions["referable_dr"]
    assert referable.labels == (ABSENT, PRESENT)
    assert [referable.record_class({"dr_grade": grade}) for grade in range(5)] == [0, 0, 1, 1, 1]
    glaucoma = questions["glaucoma"]
    assert [glaucoma.record_class(record) for record in ({"is_gc": 1}, {"is_gc": 0}, {})] == [1, 0, 0]
    assert glaucoma.prompts[1] == tuple(load_knowledge_base().class_prompts(["glaucoma"]))


def test_a_task_maps_dataset_label_values_onto_its_classes(tmp_path):
    mfiddr = load_task("mfiddr")
    assert mfiddr.labels == ("none", "diabetic_retinopathy")
    assert [mfiddr.index(grade) for grade in ("0", "1", "2", 3.0, "4")] == [0, 1, 1, 1, 1]
    with pytest.raises(ValueError, match=r"label '5' is not a class of task 'mfiddr' \['0', '1', '2', '3', '4'"):
        mfiddr.index("5")
    assert mfiddr.to_config()["classes"] == ["none", "diabetic_retinopathy"]  # a saved model asks for the classes
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes:\n  a: [glaucoma]\n  b: [normal]\nlabels:\n  '1': c\n")
    with pytest.raises(ValueError, match=r"'labels' maps onto \['c'\], which are not classes \['a', 'b'\]"):
        load_task(str(bad))


def test_the_shared_mfiddr_sample_loads_with_patient_grouped_folds():
    from visionclip.paths import real_data_dir

    root = real_data_dir() / "mfiddr"
    dataset = from_csv(root / "labels.csv", load_task("mfiddr"), "mfiddr", COLUMNS)
    labels = [item.label for item in dataset.items]
    assert len(labels) == 96 and labels.count(1) == 28  # grades 1 (20 images) and 3 (8 images)
    assert dataset.has_folds and {item.split for item in dataset.items} == {"test"}
    assert dataset.has_groups and len({item.group for item in dataset.items}) == 12  # patients
