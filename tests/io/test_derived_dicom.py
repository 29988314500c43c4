"""Derived DICOM checked by independent tools (dciodvfy, dcmtk, dcm2niix) and against the source slices' tags:
per-slice attributes, Type 1 UIDs, ImageType value 3, MR pixels without rescale, padding, source references,
provenance and the research-use notice."""

from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from rmisr_monai.cli import main
from rmisr_monai.io import read_volume, rescaled_geometry, write_volume
from rmisr_monai.io.dicom import pixel_padding_value
from rmisr_monai.io.provenance import RESEARCH_NOTICE, Provenance, sidecar_path
from tests.io.conftest import medical, series_files
from tests.io.scanner_files import TILT_Y_PER_SLICE, enhanced, real_slices, save_series, tilt
from tests.io.validators import corner_box, dciodvfy_errors, dcm2niix, dcmtk_accepts

PROVENANCE = Provenance(model="rmisr_bl64_x2", model_version="1.3", sha256="0123456789abcdef" * 4, scale=2,
                        options={"self_ensemble": 4, "axis": 2}, package_version="9.9.9")  # fmt: skip


def _in_plane_x2(volume):
    """The volume upscaled x2 in-plane by pixel repetition (a stand-in for SR: the writer is under test)."""
    array = np.repeat(np.repeat(volume.array, 2, axis=0), 2, axis=1)
    return dataclasses.replace(volume, array=array, geometry=rescaled_geometry(volume.geometry, volume.array.shape,
                                                                               array.shape))  # fmt: skip


def _headers(folder):
    files = sorted(folder.iterdir())
    return files, [pydicom.dcmread(f, stop_before_pixels=True) for f in files]


def _by_z(headers):
    return {round(float(h.ImagePositionPatient[2]), 2): h for h in headers}


# series of MANIFEST.md, 3 slices each: CT with padding (GE), MR with Laterality (GE breast), Siemens, Toshiba MR
SERIES = ["ct_ge_lightspeed16_abdomen_subset", "mr_ge_signa_breast_dce_subset", "mr_siemens_avanto_t1_thigh_subset",
          "mr_toshiba_titan_t2_abdomen_pelvis_subset", "ct_philips_brilliance16p_chest_subset"]  # fmt: skip


@pytest.mark.parametrize("series", SERIES)
def test_dciodvfy_finds_no_error_the_source_has_not(tmp_path, series):
    sources = series_files(series)[:3]
    folder = tmp_path / "in"
    folder.mkdir()
    for f in sources:
        (folder / f.name).write_bytes(f.read_bytes())
    write_volume(_in_plane_x2(read_volume(folder)), tmp_path / "out", provenance=PROVENANCE)
    files, headers = _headers(tmp_path / "out")
    before, after = dciodvfy_errors(sources), dciodvfy_errors(files)
    assert after <= before, f"new dciodvfy errors: {sorted(after - before)}"
    for file in files:
        ok, said = dcmtk_accepts(file)
        assert ok, said
    source = pydicom.dcmread(sources[0], stop_before_pixels=True)
    for keyword in ("Laterality", "ProtocolName", "SeriesDate", "SeriesTime", "ConvolutionKernel", "FlipAngle",
                    "SequenceName", "PatientOrientation", "AcquisitionDate", "AcquisitionTime"):  # fmt: skip
        if keyword in source:
            assert all(keyword in h and h[keyword].value == source[keyword].value for h in headers), keyword
    value3 = {"CT": "AXIAL", "MR": (list(source.ImageType)[2:3] or ["OTHER"])[0]}[source.Modality]
    assert all(list(h.ImageType)[:3] == ["DERIVED", "SECONDARY", value3] for h in headers)
    if source.Modality == "MR" and "RescaleSlope" not in source:
        assert all("RescaleSlope" not in h and "RescaleIntercept" not in h for h in headers)  # MR Image IOD has none


def test_per_slice_attributes_of_an_uneven_series(tmp_path):
    """Thickness, windows and acquisition times per slice (an uneven series: 5 mm and 10 mm gaps, two
    thicknesses), Laterality, tilt tag, an empty StudyInstanceUID, a source reference per slice."""
    slices = real_slices(5)
    del slices[2]

    def edit(k, ds):
        ds.SliceThickness = "4" if k < 2 else "7"
        ds.WindowCenter, ds.WindowWidth = str(40 + 10 * k), str(400 + 100 * k)
        ds.AcquisitionTime = f"1200{k:02d}"
        ds.Laterality = "R"
        ds.StudyInstanceUID = ""
        ds.SeriesDescription = " CT CH/AB "

    source = save_series(slices, tmp_path / "uneven", edit)
    volume = read_volume(source)
    assert not volume.geometry.is_regular
    write_volume(_in_plane_x2(volume), tmp_path / "out")
    _, headers = _headers(tmp_path / "out")
    originals = _by_z([pydicom.dcmread(f, stop_before_pixels=True) for f in source.iterdir()])
    outputs = _by_z(headers)
    assert sorted(outputs) == sorted(originals)
    for z, out in outputs.items():
        src = originals[z]
        assert float(out.SliceThickness) == float(src.SliceThickness)
        assert (float(out.WindowCenter), float(out.WindowWidth)) == (float(src.WindowCenter), float(src.WindowWidth))
        assert out.AcquisitionTime == src.AcquisitionTime and out.Laterality == "R"
        assert float(out.GantryDetectorTilt) == float(src.GantryDetectorTilt)
        assert [r.ReferencedSOPInstanceUID for r in out.SourceImageSequence] == [src.SOPInstanceUID]
        assert out.SourceImageSequence[0].ReferencedSOPClassUID == src.SOPClassUID
    uids = {h.StudyInstanceUID for h in headers}
    assert len(uids) == 1 and pydicom.uid.UID(uids.pop()).is_valid  # made once for the series, not copied empty
    assert all(h.SeriesDescription == "CT CH/AB SR x2x2x1" for h in headers)


def test_through_plane_slices_take_the_nearest_source_slice(tmp_path):
    slices = real_slices(3)

    def edit(k, ds):
        ds.SliceThickness = "5"
        ds.WindowCenter = str(10 * k)

    volume = read_volume(save_series(slices, tmp_path / "in", edit))
    array = np.repeat(volume.array, 2, axis=2)
    upscaled = dataclasses.replace(volume, array=array,
                                   geometry=rescaled_geometry(volume.geometry, volume.array.shape, array.shape))
    write_volume(upscaled, tmp_path / "out")
    _, headers = _headers(tmp_path / "out")
    headers.sort(key=lambda h: float(h.ImagePositionPatient[2]))
    assert [float(h.SliceThickness) for h in headers] == [2.5] * 6  # 5 mm over twice the slices
    # output planes at -1.25, +1.25 mm around each source plane: source slices 0, 0|1, 1|... by nearest plane
    centres = [float(h.WindowCenter) for h in headers]
    assert centres[0] == 0 and centres[-1] == 20 and sorted(centres) == centres
    assert all(1 <= len(h.SourceImageSequence) <= 2 for h in headers)


def test_padding_value_kept_and_never_undershot(tmp_path):
    """GE CT: PixelPaddingValue -2000 (stored) is -3024 HU; an interpolation undershoot below it is clipped."""
    folder = tmp_path / "in"
    folder.mkdir()
    for f in series_files("ct_ge_lightspeed16_abdomen_subset")[:2]:
        (folder / f.name).write_bytes(f.read_bytes())
    source = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
    volume = read_volume(folder)
    pad = int(source.PixelPaddingValue) * float(source.RescaleSlope) + float(source.RescaleIntercept)
    assert pixel_padding_value(volume) == pad == -3024
    undershoot = _in_plane_x2(volume)
    undershoot.array = undershoot.array.astype(np.int16)
    undershoot.array[0, 0, 0] = pad - 244  # a bicubic undershoot at the field-of-view edge
    write_volume(undershoot, tmp_path / "out")
    back = read_volume(tmp_path / "out")
    assert back.array.min() == pad
    first = pydicom.dcmread(sorted((tmp_path / "out").iterdir())[0], stop_before_pixels=True)
    assert first["PixelPaddingValue"].VR == "SS"
    assert int(first.PixelPaddingValue) * float(first.RescaleSlope) + float(first.RescaleIntercept) == pad


def test_provenance_in_dicom(tmp_path):
    volume = read_volume(save_series(real_slices(2), tmp_path / "in"))
    write_volume(_in_plane_x2(volume), tmp_path / "out", provenance=PROVENANCE)
    _, headers = _headers(tmp_path / "out")
    first = headers[0]
    assert "rmisr_bl64_x2 1.3" in first.DerivationDescription and "0123456789abcdef" in first.DerivationDescription
    assert "x2" in first.DerivationDescription and "self_ensemble=4" in first.DerivationDescription
    equipment = first.ContributingEquipmentSequence[-1]
    assert equipment.Manufacturer == "rmisr_monai" and equipment.ManufacturerModelName == "rmisr_bl64_x2"
    assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
    assert list(first.SoftwareVersions)[-1] == "rmisr_monai 9.9.9"
    assert first.ImageComments.startswith(RESEARCH_NOTICE)


def test_provenance_in_nifti_nrrd_mha(tmp_path):
    volume = read_volume(save_series(real_slices(2), tmp_path / "in"))
    nifti = tmp_path / "out.nii.gz"
    write_volume(volume, nifti, provenance=PROVENANCE)
    descrip = nib.load(nifti).header["descrip"].tobytes().rstrip(b"\0").decode()
    assert descrip.startswith("rmisr_monai 9.9.9 rmisr_bl64_x2 1.3 sha256:01234567 x2") and len(descrip) <= 80
    record = json.loads(sidecar_path(nifti).read_text())
    assert sidecar_path(nifti) == tmp_path / "out.json"
    assert record["model"] == "rmisr_bl64_x2" and record["sha256"] == PROVENANCE.sha256 and record["scale"] == 2
    assert record["notice"] == RESEARCH_NOTICE and record["output"]["shape"] == list(volume.array.shape)
    write_volume(volume, tmp_path / "out.nrrd", provenance=PROVENANCE, overwrite=True)
    _, header = nrrd.read(str(tmp_path / "out.nrrd"))
    assert json.loads(header["rmisr_provenance"])["model"] == "rmisr_bl64_x2"
    write_volume(volume, tmp_path / "m.mha", provenance=PROVENANCE)
    text = (tmp_path / "m.mha").read_bytes().split(b"ElementDataFile")[0].decode("latin-1")
    assert "rmisr_provenance = " in text and '"model":"rmisr_bl64_x2"' in text
    with pytest.raises(Exception, match="exists"):  # the sidecar is an output too: never overwritten silently
        write_volume(volume, tmp_path / "out.nii", provenance=PROVENANCE)


def test_nifti_descrip_and_codes_of_the_input_kept_without_provenance(tmp_path):
    volume = read_volume(save_series(real_slices(2), tmp_path / "in"))
    write_volume(volume, tmp_path / "a.nii")
    image = nib.load(tmp_path / "a.nii")
    image.header["descrip"] = b"TE=49;Time=133625.745"
    image.set_sform(image.affine, code=2)
    image.set_qform(image.affine, code=0)
    nib.save(image, tmp_path / "b.nii")
    write_volume(read_volume(tmp_path / "b.nii"), tmp_path / "c.nii")
    header = nib.load(tmp_path / "c.nii").header
    assert header["descrip"].tobytes().rstrip(b"\0") == b"TE=49;Time=133625.745"
    assert (int(header["sform_code"]), int(header["qform_code"])) == (2, 0)
    assert not (tmp_path / "c.json").exists()  # a sidecar only says what made an output


# ---------------------------------------------------------------- dcm2niix round trip


def _gantry_tilt(k, ds):
    """A tilted gantry as a scanner writes it: positions advance across the plane and the tag says by how much
    (the y step per z step gives the angle)."""
    tilt(k, ds)
    ds.GantryDetectorTilt = f"{-np.degrees(np.arctan2(TILT_Y_PER_SLICE, 5.0)):.6f}"  # dcm2niix's sign for this shift


@pytest.mark.parametrize("kind", ["straight", "tilted", "uneven"])
def test_dcm2niix_round_trip_same_slices_and_box(tmp_path, kind):
    slices = real_slices(14)
    if kind == "uneven":
        del slices[5]  # a missing slice: 5 mm steps and one of 10 mm
    source = save_series(slices, tmp_path / "in", _gantry_tilt if kind == "tilted" else None)
    write_volume(_in_plane_x2(read_volume(source)), tmp_path / "out")
    before, after = dcm2niix(source, tmp_path / "n_in"), dcm2niix(tmp_path / "out", tmp_path / "n_out")
    # + dcm2niix's tilt-corrected copy, or its copy resampled to equal steps
    assert len(before) == len(after) == (1 if kind == "straight" else 2)
    pixel = float(np.abs(before[0].header.get_zooms()[0]))
    for n, (a, b) in enumerate(zip(before, after, strict=True)):
        assert b.shape[2] == a.shape[2] == len(slices)
        assert b.shape[0] == 2 * a.shape[0]
        # the tilt-corrected copy grows by whole rows of the grid it has: its box may differ by under one input pixel
        np.testing.assert_allclose(corner_box(b), corner_box(a), atol=0.05 if n == 0 or kind != "tilted" else pixel)
        if n == 0 or kind != "tilted":
            assert b.shape[1] == 2 * a.shape[1]


# ---------------------------------------------------------------- through the command line (the acceptance interface)


def _cli_upscale(source, target):
    assert main(["upscale", str(source), str(target), "--scale", "2", "--model", "bicubic", "--quiet"]) == 0


def test_cli_tilted_series_passes_the_validators(tmp_path):
    source = save_series(real_slices(14), tmp_path / "in", _gantry_tilt)
    _cli_upscale(source, tmp_path / "out")
    files = sorted((tmp_path / "out").iterdir())
    assert dciodvfy_errors(files) <= dciodvfy_errors(sorted(source.iterdir()))
    before, after = dcm2niix(source, tmp_path / "n_in"), dcm2niix(tmp_path / "out", tmp_path / "n_out")
    assert [b.shape[2] for b in after] == [a.shape[2] for a in before] == [14, 14]
    np.testing.assert_allclose(corner_box(after[0]), corner_box(before[0]), atol=0.05)
    for file in files:
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        assert float(ds.GantryDetectorTilt) == pytest.approx(-np.degrees(np.arctan2(TILT_Y_PER_SLICE, 5.0)), abs=1e-5)


def test_cli_mosaic_to_dicom_is_a_slice_series_dcm2niix_reads_as_the_mosaic(tmp_path):
    mosaic = medical("dicom_compressed", "siemens_trio_mr_ts", "1.dcm")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "1.dcm").write_bytes(mosaic.read_bytes())
    _cli_upscale(folder, tmp_path / "out")
    files, headers = _headers(tmp_path / "out")
    assert len(files) == 35 and all("MOSAIC" not in list(h.ImageType) for h in headers)
    assert all((h.Rows, h.Columns) == (128, 128) for h in headers)
    assert dciodvfy_errors(files) <= dciodvfy_errors([mosaic])
    (before,), (after,) = dcm2niix(folder, tmp_path / "n_in"), dcm2niix(tmp_path / "out", tmp_path / "n_out")
    assert before.shape == (64, 64, 35) and after.shape == (128, 128, 35)
    np.testing.assert_allclose(corner_box(after), corner_box(before), atol=0.05)


def test_enhanced_source_per_frame_values_and_frame_references(tmp_path):
    ds = enhanced(real_slices(3), rle=False)
    for f, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = str(30 + f), str(300 + f)
        group.FrameVOILUTSequence = DicomSequence([voi])
    ds.save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)
    write_volume(_in_plane_x2(read_volume(tmp_path / "enhanced.dcm")), tmp_path / "out")
    _, headers = _headers(tmp_path / "out")
    headers.sort(key=lambda h: float(h.ImagePositionPatient[2]))
    frames = sorted(range(3), key=lambda f: float(ds.PerFrameFunctionalGroupsSequence[f].PlanePositionSequence[0]
                                                  .ImagePositionPatient[2]))  # fmt: skip
    for h, f in zip(headers, frames, strict=True):
        assert (float(h.WindowCenter), float(h.WindowWidth)) == (30 + f, 300 + f)
        reference = h.SourceImageSequence[0]
        assert reference.ReferencedSOPInstanceUID == ds.SOPInstanceUID and reference.ReferencedFrameNumber == f + 1


@pytest.mark.parametrize("name", ["rtdose.dcm", "CT_small.dcm", "MR_small.dcm", "RG2_JLSL.dcm"])
def test_single_files_dose_and_radiograph_pass_dciodvfy(tmp_path, name):
    """An RT Dose grid and a CR radiograph become secondary capture series; CT and MR slices stay CT and MR."""
    if name.startswith("RG"):
        path = medical("dicom_compressed", "nema_cr_radiographs", name)
    else:
        path = get_testdata_file(name)
    volume = read_volume(path)
    write_volume(_in_plane_x2(volume), tmp_path / "out", dtype=np.float32 if name == "rtdose.dcm" else None)
    files, headers = _headers(tmp_path / "out")
    assert dciodvfy_errors(files) <= dciodvfy_errors([path])
    assert all(dcmtk_accepts(f)[0] for f in files)
    if name == "rtdose.dcm":  # Gy kept through the secondary capture's rescale
        back = read_volume(tmp_path / "out")
        np.testing.assert_allclose(back.array[::2, ::2], volume.array, atol=float(headers[0].RescaleSlope))
