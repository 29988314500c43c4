"""The body of this project's model-zoo unit tests (``ci/unit_tests/test_<bundle>.py`` import it; copied beside
them): train one tiny epoch, evaluate the trained weights, infer with the shipped ones, each through ConfigWorkflow
with ``check_properties=True``, in the style of the zoo's test_spleen_ct_segmentation.py."""

import os
import shutil
import tempfile
import unittest

import nibabel as nib
import numpy as np
from monai.bundle import ConfigWorkflow
from parameterized import parameterized
from utils import check_workflow


def test_order(test_name1, test_name2):
    def get_order(name):
        if "train" in name:
            return 1
        if "eval" in name:
            return 2
        if "infer" in name:
            return 3
        return 4

    return get_order(test_name1) - get_order(test_name2)


def bundle_test_case(name: str, small: dict, evaluate: dict | None = None) -> type:
    """The zoo's test class of bundle ``name`` (under ``models/``); ``small``: overrides for a faster tiny network;
    ``evaluate``: overrides of the evaluation alone (a through-plane bundle: a thick axis the tiny images can shrink)."""
    BUNDLE_ROOT = f"models/{name}"
    SMALL = small
    EVALUATE = dict(evaluate or {})

    TEST_CASE_1 = [  # train, evaluate
        {
            "bundle_root": BUNDLE_ROOT,
            "max_epochs": 1,
            "val_interval": 1,
            "patch_size": 8,
            "batch_size": 2,
            "device": "cpu",
            "data#val_slices": 2,
            **SMALL,
        }
    ]

    TEST_CASE_2 = [  # inference with the shipped weights
        {"bundle_root": BUNDLE_ROOT, "device": "cpu"}
    ]

    class BundleTest(unittest.TestCase):
        def setUp(self):
            self.dataset_dir = tempfile.mkdtemp()
            self.output_dir = tempfile.mkdtemp()
            rng = np.random.default_rng(0)
            i, j = np.meshgrid(np.arange(40), np.arange(40), indexing="ij")
            body = np.hypot(i - 19.5, j - 19.5) < 16
            for s in range(3):
                # a noisy disc of soft tissue in air, in HU, 1 x 1 x 3 mm
                image = np.where(body, 40, -1000)[..., None] + rng.normal(0, 30, (40, 40, 3))
                nib.save(nib.Nifti1Image(image.astype(np.int16), np.diag([1.0, 1.0, 3.0, 1.0])),
                         os.path.join(self.dataset_dir, f"image_{s}.nii.gz"))

        def tearDown(self):
            shutil.rmtree(self.dataset_dir)
            shutil.rmtree(self.output_dir)

        @parameterized.expand([TEST_CASE_1])
        def test_train_eval_config(self, override):
            override["dataset_dir"] = self.dataset_dir
            bundle_root = override["bundle_root"]
            run = os.path.join(self.output_dir, "train")
            trainer = ConfigWorkflow(
                workflow_type="train",
                config_file=os.path.join(bundle_root, "configs/train.json"),
                logging_file=os.path.join(bundle_root, "configs/logging.conf"),
                meta_file=os.path.join(bundle_root, "configs/metadata.json"),
                output_dir=run,
                **override,
            )
            check_workflow(trainer, check_properties=True)
            weights = os.path.join(run, "models", "model.pt")
            self.assertTrue(os.path.isfile(weights))

            validator = ConfigWorkflow(
                workflow_type="eval",
                config_file=os.path.join(bundle_root, "configs/evaluate.json"),
                logging_file=os.path.join(bundle_root, "configs/logging.conf"),
                meta_file=os.path.join(bundle_root, "configs/metadata.json"),
                output_dir=os.path.join(self.output_dir, "eval"),
                checkpoint=weights,
                max_slices=2,
                bundle_root=bundle_root,
                dataset_dir=self.dataset_dir,
                device="cpu",
                **SMALL,
                **EVALUATE,
            )
            check_workflow(validator, check_properties=True)
            self.assertTrue(os.path.isfile(os.path.join(self.output_dir, "eval", "evaluation.json")))

        @parameterized.expand([TEST_CASE_2])
        def test_infer_config(self, override):
            override["dataset_dir"] = self.dataset_dir
            bundle_root = override["bundle_root"]
            inferrer = ConfigWorkflow(
                workflow_type="infer",
                config_file=os.path.join(bundle_root, "configs/inference.json"),
                logging_file=os.path.join(bundle_root, "configs/logging.conf"),
                meta_file=os.path.join(bundle_root, "configs/metadata.json"),
                output_dir=os.path.join(self.output_dir, "infer"),
                **override,
            )
            check_workflow(inferrer, check_properties=True)
            written = [n for n in os.listdir(os.path.join(self.output_dir, "infer")) if n.endswith(".nii.gz")]
            self.assertEqual(len(written), 3)

    BundleTest.__name__ = BundleTest.__qualname__ = "Test" + "".join(w.capitalize() for w in name.split("_"))
    return BundleTest
