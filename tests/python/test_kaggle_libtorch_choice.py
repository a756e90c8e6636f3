#!/usr/bin/env python3
"""The Kaggle setup cell's libtorch choice (kernel/kaggle_setup.py), on recorded-format
nvidia-smi answers: T4 with new and old drivers, P100, no GPU, a broken driver."""
import importlib.util
import os
import unittest

os.environ["EMERGENCE_LAB_SETUP_NO_RUN"] = "1"
_path = os.path.join(os.path.dirname(__file__), "..", "..", "kernel", "kaggle_setup.py")
_spec = importlib.util.spec_from_file_location("kaggle_setup", _path)
setup = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(setup)


def header(cuda):
    return ("+-----------------------------------------------------------------------------+\n"
            f"| NVIDIA-SMI 560.35.03   Driver Version: 560.35.03   CUDA Version: {cuda}     |\n")


T4X2 = "Tesla T4, 7.5, 560.35.03\nTesla T4, 7.5, 560.35.03\n"
P100 = "Tesla P100-PCIE-16GB, 6.0, 550.54.15\n"


class Choice(unittest.TestCase):
    def test_parses_nvidia_smi(self):
        f = setup._parse_nvidia_smi(header("12.6"), T4X2)
        self.assertEqual(f["driver_cuda"], (12, 6))
        self.assertEqual([g["sm"] for g in f["gpus"]], ["sm_75", "sm_75"])
        self.assertEqual(f["gpus"][0]["driver"], "560.35.03")
        f = setup._parse_nvidia_smi("garbage", "Tesla K80, [N/A], 470.1\n")
        self.assertIsNone(f["driver_cuda"])
        self.assertIsNone(f["gpus"][0]["sm"])

    def test_t4_gets_the_newest_build_its_driver_supports(self):
        self.assertEqual(setup._choose_libtorch(setup._parse_nvidia_smi(header("13.0"), T4X2)), ("cu130", None))
        self.assertEqual(setup._choose_libtorch(setup._parse_nvidia_smi(header("12.9"), T4X2)), ("cu128", None))
        self.assertEqual(setup._choose_libtorch(setup._parse_nvidia_smi(header("12.6"), T4X2)), ("cu126", None))

    def test_the_image_torch_is_used_when_it_fits(self):
        f = setup._parse_nvidia_smi(header("12.8"), T4X2)
        image = ("2.11.0+cu128", (12, 8), ["sm_75", "sm_80"])
        self.assertEqual(setup._choose_libtorch(f, image), ("image", None))
        # Another torch version, or a build the driver cannot run, is not used.
        self.assertEqual(setup._choose_libtorch(f, ("2.10.0+cu128", (12, 8), ["sm_75"])), ("cu128", None))
        self.assertEqual(setup._choose_libtorch(f, ("2.11.0+cu130", (13, 0), ["sm_75"])), ("cu128", None))

    def test_p100_needs_a_build_with_pascal_kernels(self):
        self.assertEqual(setup._choose_libtorch(setup._parse_nvidia_smi(header("12.8"), P100)), ("cu126", None))
        choice, problem = setup._choose_libtorch(setup._parse_nvidia_smi(header("12.4"), P100))
        self.assertIsNone(choice)
        for want in ["sm_60", "up to 12.4", "cu126", "T4"]:
            self.assertIn(want, problem)

    def test_old_driver_and_broken_driver_are_clear_errors(self):
        choice, problem = setup._choose_libtorch(setup._parse_nvidia_smi(header("12.2"), T4X2))
        self.assertIsNone(choice)
        self.assertIn("driver supports CUDA up to 12.2", problem)
        choice, problem = setup._choose_libtorch(setup._parse_nvidia_smi("", T4X2))
        self.assertIsNone(choice)
        self.assertIn("driver is not working", problem)

    def test_no_gpu_is_cpu(self):
        self.assertEqual(setup._choose_libtorch(setup._parse_nvidia_smi("", "")), ("cpu", None))
        self.assertEqual(setup._choose_libtorch({"gpus": []}, ("2.11.0", None, None)), ("image", None))

    def test_an_installed_build_is_checked_again(self):
        f = setup._parse_nvidia_smi(header("13.0"), P100)
        self.assertIn("not for sm_60", setup._libtorch_problem(f, (13, 0), ["sm_75", "sm_80"]))
        self.assertIn("CPU-only", setup._libtorch_problem(f, None, None))
        self.assertIsNone(setup._libtorch_problem(f, (12, 6), ["sm_60", "sm_75"]))


if __name__ == "__main__":
    unittest.main()
