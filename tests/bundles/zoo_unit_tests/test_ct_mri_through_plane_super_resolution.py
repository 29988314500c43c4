# The model zoo's unit test of ct_mri_through_plane_super_resolution (ci/unit_tests/test_<bundle>.py), run by the zoo's runner from a
# model-zoo checkout with the bundle under models/: python ci/unit_tests/runner.py -b ct_mri_through_plane_super_resolution
# The test body is zoo_bundle_test.py (copied beside this file).

import unittest

from zoo_bundle_test import bundle_test_case, test_order

TestCtMriThroughPlaneSuperResolution = bundle_test_case("ct_mri_through_plane_super_resolution", {"network_kwargs#num_blocks": 1}, {"axis": "x"})

if __name__ == "__main__":
    loader = unittest.TestLoader()
    loader.sortTestMethodsUsing = test_order
    unittest.main(testLoader=loader)
