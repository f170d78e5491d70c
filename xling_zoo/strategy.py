"""The tf.distribute strategy a run trains under (``train.strategy``), and which worker is the chief.

``--strategy=tpu`` finds, reaches and initializes its TPU under one deadline: a missing name or an
address where no TPU answers is one ``UserError`` within a minute, not a traceback, and not the hang
of TensorFlow's own connect, which waits for an absent server forever.
"""

import socket
import threading

import tensorflow as tf

from xling_zoo.errors import UserError

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
# Seconds to find, reach and initialize a TPU: short enough that a wrong address fails within a
# minute of the command, Python start-up included.
TPU_TIMEOUT_S = 45.0
# Seconds for the TCP connect that checks each TPU address before TensorFlow is pointed at it.
TPU_PROBE_TIMEOUT_S = 10.0
HOW_TO_SET_TPU = ("set it with --set=train.tpu=NAME (a Cloud TPU name), --set=train.tpu=grpc://HOST:8470 "
                  "(an address), or run on a TPU VM with --set=train.tpu=local")
# Where TensorFlow's Cloud TPU client looks for a TPU when train.tpu is empty.
TPU_ENVIRONMENT = ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_CONFIG")


def make_strategy(train_config, tpu_timeout_s=None):
    """The tf.distribute strategy named by ``train.strategy``.

    tpu_timeout_s: seconds allowed to reach and initialize the TPU of ``train.tpu``; default
      ``train.tpu_timeout_seconds`` where the config has that field, else ``TPU_TIMEOUT_S``.
    """
    name = train_config.strategy
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # All local GPUs; on a machine without any, all (logical) CPU devices — how tests run it.
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        # Reads the cluster from the TF_CONFIG environment variable.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        if tpu_timeout_s is None:
            tpu_timeout_s = train_config.get("tpu_timeout_seconds") or TPU_TIMEOUT_S
        return tf.distribute.TPUStrategy(connect_tpu(train_config.tpu, tpu_timeout_s))
    raise UserError(f"train.strategy={name!r} is not one of {', '.join(STRATEGIES)}")


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    return resolver.task_type in (None, "chief") or (resolver.task_type == "worker" and resolver.task_id == 0)


def connect_tpu(tpu, timeout_s=TPU_TIMEOUT_S):
    """Finds the TPU ``tpu`` (train.tpu: a Cloud TPU name, grpc://HOST:PORT, "local", or "" for the
    TPU_NAME / TPU_CONFIG environment), connects to it and initializes it. Returns its resolver.

    Raises a one-line UserError naming the address tried when there is no TPU to find, nothing
    answers there, or it does not initialize within ``timeout_s``. The work runs on a daemon thread
    that is abandoned at the deadline (TensorFlow's connect cannot be cancelled), leaving TensorFlow's
    remote context half set up: after this error the process should exit, as the entry points do.
    """
    found = {"address": tpu or "the TPU named by $TPU_NAME / $TPU_CONFIG"}

    def work():
        try:
            found["resolver"] = _resolve_and_initialize(tpu, found)
        except Exception as e:  # noqa: BLE001  (re-raised on the caller's thread)
            found["error"] = e

    thread = threading.Thread(target=work, name="xling_zoo_connect_tpu", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise UserError(f"--strategy=tpu: no TPU answered at {found['address']} within {timeout_s:g} s; "
                        f"{HOW_TO_SET_TPU}")
    if "error" in found:
        raise found["error"]
    resolver = found["resolver"]
    _make_master_device_default(resolver)
    return resolver


def _resolve_and_initialize(tpu, found):
    """Runs on connect_tpu's thread: resolve the name, probe every address, connect, initialize;
    ``found["address"]`` always says what is being tried, for the caller's timeout message."""
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        addresses = [] if resolver.master() in ("", "local") else _addresses(resolver)
    except Exception as e:  # noqa: BLE001  (name lookup fails in many ways, all meaning "no such TPU")
        if isinstance(e, ValueError) and not tpu:
            raise UserError(f"--strategy=tpu: no TPU address to try: train.tpu is empty and none of "
                            f"{', '.join(TPU_ENVIRONMENT)} is set; {HOW_TO_SET_TPU}") from None
        raise UserError(f"--strategy=tpu: could not find TPU {found['address']!r} "
                        f"({_first_line(e)}); {HOW_TO_SET_TPU}") from None
    if addresses:
        found["address"] = ", ".join(f"grpc://{a}" for a in addresses)
    for address in addresses:
        _probe(address, TPU_PROBE_TIMEOUT_S)
    try:
        # The master device scope TensorFlow would enter here is per thread: connect_tpu enters it
        # on the caller's thread instead.
        tf.config.experimental_connect_to_cluster(resolver, make_master_device_default=False)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (tf.errors.OpError, ValueError, RuntimeError) as e:
        where = found["address"] if addresses else "this machine (train.tpu=local)"
        what = "has no TPU" if isinstance(e, tf.errors.NotFoundError) else "did not initialize"
        raise UserError(f"--strategy=tpu: {where} {what} ({_first_line(e)}); {HOW_TO_SET_TPU}") from None
    return resolver


def _addresses(resolver):
    """HOST:PORT of every TPU worker of the resolver's cluster."""
    return list(resolver.cluster_spec().job_tasks(resolver.get_job_name()))


def _probe(address, timeout_s):
    """A TCP connect to HOST:PORT: refused or unreachable in seconds, where TensorFlow would wait."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as e:
        raise UserError(f"--strategy=tpu: nothing answers at grpc://{address} ({_first_line(e)}); "
                        f"{HOW_TO_SET_TPU}") from None


def _make_master_device_default(resolver):
    """What ``experimental_connect_to_cluster`` does by default, on the calling thread: ops without a
    device run on the TPU host, not on this client (nothing to do for a TPU VM's local TPU)."""
    if resolver.master() in ("", "local"):
        return
    tf.device(f"/job:{resolver.get_job_name()}/replica:0/task:{resolver.task_id}").__enter__()


def _first_line(error, limit=160):
    """The start of an error's message, for a one-line UserError (TensorFlow's run to many lines)."""
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."

