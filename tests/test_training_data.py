"""Class-folder discovery, label maps, and the data check report."""

import pytest

from tests.conftest import write_class_folders
from training.data import check_report, discover, load_label_map, main
from training.errors import DataError


def test_labels_are_sorted_folder_names(photo_folder):
    dataset = discover(photo_folder)
    assert dataset.labels == ["cardboard", "glass", "metal"]
    assert dataset.counts() == {"cardboard": 8, "glass": 8, "metal": 8}


def test_label_map_merges_source_folders(tmp_path):
    root = write_class_folders(tmp_path / "d", labels=("pet", "hdpe", "glass"), per_class=2)
    (tmp_path / "map.yaml").write_text("pet: plastic\nhdpe: plastic\n")
    dataset = discover(root, label_map=load_label_map(tmp_path / "map.yaml"))
    assert dataset.labels == ["glass", "plastic"]
    assert dataset.counts()["plastic"] == 4


def test_explicit_label_order_is_kept_and_checked(photo_folder):
    assert discover(photo_folder, labels=["metal", "glass", "cardboard"]).labels == ["metal", "glass", "cardboard"]
    with pytest.raises(DataError, match="no images for labels paper"):
        discover(photo_folder, labels=["metal", "glass", "cardboard", "paper"])


def test_missing_folder_and_empty_class_are_clear_errors(tmp_path, photo_folder):
    with pytest.raises(DataError, match="not found"):
        discover(tmp_path / "nowhere")
    (photo_folder / "paper").mkdir()
    with pytest.raises(DataError, match="paper: class folder has no images"):
        discover(photo_folder)


def test_corrupt_images_are_listed_and_skipped(photo_folder):
    (photo_folder / "glass" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    dataset = discover(photo_folder, verify=True)
    assert dataset.unreadable == ["glass/broken.jpg"]
    assert "glass/broken.jpg" not in dict(dataset.items)


def test_a_link_to_a_photo_that_is_gone_is_listed_as_unreadable_not_silently_missed(photo_folder, tmp_path):
    (photo_folder / "glass" / "moved.jpg").symlink_to(tmp_path / "no-such-photo.jpg")
    dataset = discover(photo_folder, verify=True)
    assert dataset.unreadable == ["glass/moved.jpg"]
    assert "glass/moved.jpg" in check_report(photo_folder)[0]


def test_a_file_the_bin_cannot_decode_is_skipped_although_pillow_reads_it(photo_folder):
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 30, 30)).save(photo_folder / "glass" / "icon_in_disguise.png", format="ICO")
    Image.new("RGB", (16, 16), (200, 30, 30)).save(photo_folder / "glass" / "tiff_in_disguise.jpg", format="TIFF")
    dataset = discover(photo_folder, verify=True)
    # Neither would the bin's replay read: an icon, and a TIFF whose size no header reader knows.
    assert dataset.unreadable == ["glass/icon_in_disguise.png", "glass/tiff_in_disguise.jpg"]
    report, _ = check_report(photo_folder)  # check lists what training will skip, and does not count it
    assert "  glass/icon_in_disguise.png" in report and "| glass | 8 |" in report


def test_photos_in_formats_training_does_not_read_are_named_not_silently_passed_over(photo_folder):
    (photo_folder / "glass" / "IMG_0001.HEIC").write_bytes(b"heic bytes")
    (photo_folder / "metal" / "can.gif").write_bytes(b"GIF89a")
    (photo_folder / "metal" / "notes.txt").write_text("not a photo at all")
    (photo_folder / "metal" / "saved-by-edge.jfif").write_bytes((photo_folder / "metal" / "metal_0.jpg").read_bytes())
    dataset = discover(photo_folder)
    assert "metal/saved-by-edge.jfif" in dict(dataset.items)  # a JPEG by another name is read
    assert dataset.other_formats == ["glass/IMG_0001.HEIC", "metal/can.gif"]
    assert "glass/IMG_0001.HEIC" not in dict(dataset.items)
    report, trainable = check_report(photo_folder)
    assert trainable
    assert "files in formats training does not read (2, left out; convert them to JPEG or PNG):" in report
    assert "  glass/IMG_0001.HEIC" in report and "notes.txt" not in report


def test_a_class_of_iphone_photos_says_why_it_has_no_images(photo_folder):
    (photo_folder / "paper").mkdir()
    for n in range(3):
        (photo_folder / "paper" / f"IMG_{n}.heic").write_bytes(b"heic bytes")
    with pytest.raises(DataError, match=r"paper: class folder has no images \(3 files \(\.heic 3\) in formats "
                                        r"training does not read: convert them to JPEG or PNG\)"):
        discover(photo_folder)


def test_check_reports_counts_corrupt_files_and_cross_label_duplicates(photo_folder, capsys):
    (photo_folder / "glass" / "broken.jpg").write_bytes(b"junk")
    (photo_folder / "metal" / "copy.jpg").write_bytes((photo_folder / "glass" / "glass_0.jpg").read_bytes())
    report, trainable = check_report(photo_folder)
    assert trainable
    assert "| glass | 8 |" in report and "| metal | 9 |" in report
    assert "glass/broken.jpg" in report
    assert "carrying two labels: 1" in report and "! glass/glass_0.jpg = metal/copy.jpg" in report
    assert "imbalance ratio" in report and "64x48" in report


def test_a_class_folder_whose_every_file_is_unreadable_is_an_error_not_a_vanished_class(photo_folder):
    wood = photo_folder / "wood"
    wood.mkdir()
    (wood / "a.jpg").write_bytes(b"random bytes")
    with pytest.raises(DataError, match=r"wood: class folder has no readable images \(1 unreadable\)"):
        discover(photo_folder, verify=True)


def test_check_reports_every_problem_without_stopping_at_the_first_and_exits_1(photo_folder, capsys):
    (photo_folder / "paper").mkdir()  # empty
    (photo_folder / "wood").mkdir()
    (photo_folder / "wood" / "a.jpg").write_bytes(b"random bytes")
    (photo_folder / "map.yaml").write_text("PET: plastic\n")
    assert main(["check", str(photo_folder), "--label-map", str(photo_folder / "map.yaml")]) == 1
    report = capsys.readouterr().out
    assert "  paper: class folder has no images" in report
    assert "  wood: class folder has no readable images (1 unreadable)" in report
    assert "  label map: 'PET' names no folder" in report
    assert "| glass | 8 |" in report  # the rest of the report is still there
    assert "| paper | 0 |" in report and "| wood | 0 |" in report and "imbalance ratio (largest / smallest class): infinite" in report


def test_check_lists_same_class_duplicates_and_size_statistics(photo_folder):
    (photo_folder / "glass" / "again.jpg").write_bytes((photo_folder / "glass" / "glass_0.jpg").read_bytes())
    report, _ = check_report(photo_folder)
    assert "  glass/again.jpg = glass/glass_0.jpg" in report and "carrying two labels: 0" in report
    assert "  width: min 64, median 64, max 64 px" in report and "  height: min 48, median 48, max 48 px" in report


def test_a_label_map_key_that_names_no_folder_is_reported(photo_folder):
    dataset = discover(photo_folder, label_map={"PET": "plastic", "glass": "glass"})
    assert dataset.unused_map_keys == ["PET"]


def test_check_command_exits_2_on_a_missing_folder(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nowhere")]) == 2
    assert "data folder not found" in capsys.readouterr().err


def test_webp_of_every_kind_and_mpo_jpegs_are_kept(photo_folder):
    from PIL import Image

    Image.new("RGBA", (16, 16), (200, 30, 30, 128)).save(photo_folder / "glass" / "transparent.webp")
    Image.new("RGB", (16, 16), (200, 30, 30)).save(photo_folder / "glass" / "plain.webp")
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((200, 30, 30), (30, 200, 30))]
    frames[0].save(photo_folder / "glass" / "moving.webp", save_all=True, append_images=frames[1:])  # its first frame
    frames[0].save(photo_folder / "glass" / "phone.jpg", format="MPO", save_all=True, append_images=frames[1:])
    dataset = discover(photo_folder, verify=True)
    assert dataset.unreadable == []
    kept = {rel for rel, _ in dataset.items}
    assert {"glass/plain.webp", "glass/transparent.webp", "glass/moving.webp", "glass/phone.jpg"} <= kept


def test_labels_are_unicode_nfc_whatever_form_the_folder_name_has(tmp_path):
    decomposed, composed = "bio-mu\u0308ll", "bio-m\u00fcll"  # a folder copied from a Mac; a name typed by hand
    root = write_class_folders(tmp_path / "d", labels=(decomposed, "glass", "rest"), per_class=2)
    assert discover(root).labels == [composed, "glass", "rest"]
    (tmp_path / "map.yaml").write_text(f"{composed}: compost\n", encoding="utf-8")
    mapped = discover(root, label_map=load_label_map(tmp_path / "map.yaml"))
    assert mapped.labels == ["compost", "glass", "rest"] and mapped.unused_map_keys == []


def test_a_folder_mapped_twice_is_an_error_not_a_silent_last_wins(tmp_path):
    (tmp_path / "map.yaml").write_text("bottles: plastic\ncans: metal\nbottles: glass\n")
    with pytest.raises(DataError, match=r"bottles: line 3: appears again \(first on line 1\)"):
        load_label_map(tmp_path / "map.yaml")


def test_two_keys_that_name_the_same_folder_are_an_error(tmp_path):
    (tmp_path / "map.yaml").write_text('1: glass\n"1": metal\n')
    with pytest.raises(DataError, match="names the folder '1' again"):
        load_label_map(tmp_path / "map.yaml")


def test_a_label_map_with_a_yaml_syntax_error_is_one_line_with_where(tmp_path):
    (tmp_path / "map.yaml").write_text("pet: [plastic\nhdpe: plastic\n")
    with pytest.raises(DataError) as caught:
        load_label_map(tmp_path / "map.yaml")
    assert str(caught.value) == (f"{tmp_path / 'map.yaml'}: label map: YAML syntax error at line 2, column 5: "
                                 "expected ',' or ']', but got ':'")


def test_a_label_map_that_is_not_utf8_is_one_clear_error(tmp_path):
    (tmp_path / "map.yaml").write_bytes("bio: Bio-M\u00fcll\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8 text"):
        load_label_map(tmp_path / "map.yaml")


def test_check_refuses_a_folder_name_no_model_can_carry_as_a_label(tmp_path, capsys):
    root = write_class_folders(tmp_path / "d", labels=("glass", "metal "), per_class=2)
    assert main(["check", str(root)]) == 1
    assert "'metal ': not a class name a model can carry" in capsys.readouterr().out


def test_hidden_files_and_folders_and_macos_leftovers_are_not_photos(photo_folder):
    glass = photo_folder / "glass"
    (glass / "._glass_0.jpg").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (glass / ".ipynb_checkpoints").mkdir()
    (glass / ".ipynb_checkpoints" / "copy.jpg").write_bytes((glass / "glass_0.jpg").read_bytes())
    (photo_folder / "__MACOSX" / "glass").mkdir(parents=True)
    (photo_folder / "__MACOSX" / "glass" / "._glass_1.jpg").write_bytes(b"\x00\x05\x16\x07")
    dataset = discover(photo_folder, verify=True)
    assert dataset.labels == ["cardboard", "glass", "metal"]
    assert dataset.counts()["glass"] == 8 and dataset.unreadable == []


def test_photos_in_subfolders_and_symlinked_subfolders_of_a_class_are_found(photo_folder, tmp_path):
    more = tmp_path / "more"
    write_class_folders(more, labels=("glass",), per_class=3)
    (photo_folder / "glass" / "linked").symlink_to(more / "glass", target_is_directory=True)
    assert discover(photo_folder).counts()["glass"] == 11


@pytest.mark.parametrize("mode", ["1", "P", "L", "RGB"])
def test_every_bmp_the_bin_reads_is_trained_on_as_the_bin_sees_it(photo_folder, mode):
    import numpy as np
    from PIL import Image

    from edge import imaging
    from training.pipeline import as_the_bin_sees_it

    picture = Image.new("RGB", (16, 16), (200, 30, 30))
    picture = picture.convert(mode) if mode != "P" else picture.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    path = photo_folder / "glass" / f"odd_{mode}.bmp"
    picture.save(path)
    dataset = discover(photo_folder, verify=True)
    assert f"glass/odd_{mode}.bmp" not in dataset.unreadable
    trained = as_the_bin_sees_it(path.read_bytes(), 16)
    assert np.array_equal(trained, imaging.read_image(path))  # a palette's colours, not its indices as grey


def test_check_says_when_the_class_folders_are_one_level_too_deep_and_exits_1(tmp_path, capsys):
    write_class_folders(tmp_path / "unpacked" / "dataset-resized", per_class=2)  # as TrashNet's zip unpacks
    assert main(["check", str(tmp_path / "unpacked")]) == 1
    out = capsys.readouterr().out
    assert "only one class, 'dataset-resized': a classifier needs two or more" in out and "(training stops here)" in out


def test_a_file_larger_than_any_photo_is_unreadable_without_being_read_whole(tmp_path, monkeypatch):
    from edge import imaging
    from training.data import file_digest, readable_size

    monkeypatch.setattr(imaging, "MAX_FILE_BYTES", 1000)
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as handle:
        handle.truncate(64 * 2**20)  # sparse
    assert readable_size(huge) is None
    assert len(file_digest(huge)) == 64  # hashed in chunks


def test_check_of_an_empty_path_is_a_usage_error_not_the_current_folder(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["check", ""])
    assert caught.value.code == 2 and "an empty path names no file or folder" in capsys.readouterr().err
