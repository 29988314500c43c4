"""Small synthetic inputs for the CLI tests (written with pydicom, no shared data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_ct_series(folder: Path) -> Path:
    """A 4-slice 8 x 8 CT series (int16, 0.8 x 0.8 x 2 mm) whose patient tags are the canary ``CANARY^PHI``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    for z in range(4):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "CANARY^PHI", "CANARYID", "19000101"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, "CT"
        ds.InstanceNumber = z + 1
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * z]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.8], 2.0
        ds.Rows = ds.Columns = 8
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = (np.arange(64, dtype=np.int16).reshape(8, 8) * (z + 1)).tobytes()
        ds.save_as(folder / f"slice{z}.dcm", enforce_file_format=True)
    return folder
