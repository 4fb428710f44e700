"""Faults for the `python -m transfer_core` subprocesses of test_faults.py, put on their PYTHONPATH.

TRANSFER_TEST_FAULT selects one (unset: nothing happens, and torch is not even imported):
  slow_steps=SECONDS  every training forward pass sleeps this long (the numbers do not change), so a
                      test can catch the process in the middle of an epoch
  enospc_save=N       the Nth checkpoint write fails as a full disk would: some bytes, then ENOSPC
"""
import os

_fault = os.environ.get("TRANSFER_TEST_FAULT", "")
if _fault:
    import errno
    import time

    _name, _, _value = _fault.partition("=")
    if _name == "slow_steps":
        import transfer_core.trainer as _trainer

        _build = _trainer.build_model

        def _slow_build(*args, **kwargs):
            built = _build(*args, **kwargs)

            def _sleep(module, inputs):
                if module.training:
                    time.sleep(float(_value))
            built.net.register_forward_pre_hook(_sleep)
            return built
        _trainer.build_model = _slow_build
    elif _name == "enospc_save":
        import transfer_core.checkpoint as _checkpoint

        _save = _checkpoint.torch.save
        _calls = [0]

        def _full_disk_save(obj, f, *args, **kwargs):
            _calls[0] += 1
            if _calls[0] >= int(_value):
                f.write(b"\0" * 1000)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return _save(obj, f, *args, **kwargs)
        _checkpoint.torch.save = _full_disk_save
    else:
        raise SystemExit(f"unknown TRANSFER_TEST_FAULT {_fault!r}")
