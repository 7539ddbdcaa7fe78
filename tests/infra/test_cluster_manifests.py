"""The cluster files parse, are valid for the pinned Ray, and name only images, files and commands that exist in
this repository; every node gets the shared volume and the same environment; nothing secret is written in them,
and nothing is exposed beyond the cluster network or localhost."""

from __future__ import annotations

import json
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import ray
import yaml

from flowsteer.cli import build_parser
from flowsteer.sweeps.spec import load_sweep

from .test_container_images import DOCKERFILE, instructions

REPO = Path(__file__).parents[2]
INFRA = REPO / "infra"
KUBERAY = INFRA / "ray" / "kuberay"
SHARED = "/shared"
SECRET_NAMES = ("PASSWORD", "TOKEN", "SECRET", "KEY")


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def image_targets() -> set[str]:
    """flowsteer:<target> for every build stage of infra/docker/Dockerfile."""
    return {f"flowsteer:{args.split()[-1]}" for kind, args in instructions(DOCKERFILE) if kind == "FROM"}


def workdir() -> str:
    return next(args for kind, args in instructions(DOCKERFILE) if kind == "WORKDIR")


def containers(manifest: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) of every pod template in a RayCluster or RayJob."""
    spec = manifest["spec"]
    pods = []
    if manifest["kind"] == "RayCluster":
        pods = [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
    elif manifest["kind"] == "RayJob":
        pods = [spec["submitterPodTemplate"]["spec"]]
    return [(pod, container) for pod in pods for container in pod["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def check_sweep_command(argv: list[str]) -> None:
    """A `flowsteer sweep FILE ...` command of the image: the console script, its flags, a sweep file in the repo."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert argv[0] in scripts, argv[0]
    args = build_parser().parse_args(argv[1:])  # the CLI accepts every flag
    assert args.command == "sweep" and args.address == "auto"
    assert str(args.file).startswith(workdir() + "/"), f"{args.file} is not inside the image's {workdir()}"
    in_repo = REPO / Path(args.file).relative_to(workdir())
    assert in_repo.exists(), in_repo
    load_sweep(in_repo)  # a valid sweep file
    assert str(args.storage).startswith(SHARED + "/"), "sweep storage must be on the shared volume"


# ---------------------------------------------------------------------------------------------- KubeRay


def test_kuberay_manifests_parse_and_kustomize_lists_files_that_exist():
    kinds = {}
    for path in sorted(KUBERAY.rglob("*.yaml")):
        for doc in load(path):
            kinds.setdefault(doc["kind"], []).append(path.name)
            if doc["kind"] == "Kustomization":
                for resource in doc["resources"]:
                    assert (path.parent / resource).exists(), resource
                assert [i["name"] for i in doc["images"]] == ["flowsteer"]
    assert {"RayCluster", "RayJob", "PersistentVolumeClaim", "NetworkPolicy"} <= set(kinds)


def test_every_ray_pod_runs_a_flowsteer_image_with_the_shared_volume_and_the_same_environment():
    (cluster,) = load(KUBERAY / "raycluster.yaml")
    (claim,) = load(KUBERAY / "storage.yaml")
    assert cluster["spec"]["rayVersion"] == ray.__version__
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every node writes run directories
    environments = []
    for pod, container in containers(cluster):
        assert container["image"] in image_targets(), container["image"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert volumes[mounts[SHARED]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        env = env_of(container)
        assert env["FLOWSTEER_CACHE_DIR"].startswith(SHARED) and env["FLOWSTEER_OGBENCH_DIR"].startswith(SHARED)
        assert env["MLFLOW_TRACKING_URI"].startswith("http")
        assert 0 < float(env["XLA_CLIENT_MEM_FRACTION"]) < 1
        assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in env  # setting both is an error in jaxlib 0.10
        environments.append(env)
    assert all(env == environments[0] for env in environments)
    groups = cluster["spec"]["workerGroupSpecs"]
    gpu = [g for g in groups if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    assert gpu and gpu[0]["template"]["spec"]["containers"][0]["image"] == "flowsteer:gpu"
    assert gpu[0]["minReplicas"] >= 1  # a sweep asking for GPUs refuses to start on a cluster without one


def test_credentials_come_from_secrets_and_ray_uses_token_auth_everywhere():
    token_secrets = set()
    for path in (KUBERAY / "raycluster.yaml", KUBERAY / "sweep" / "rayjob.yaml"):
        for manifest in load(path):
            for _, container in containers(manifest):
                env = env_of(container)
                assert env["RAY_AUTH_MODE"] == "token"
                token_secrets.add(json.dumps(env["RAY_AUTH_TOKEN"], sort_keys=True))
                for name, value in env.items():
                    if any(word in name for word in SECRET_NAMES):
                        assert isinstance(value, dict) and "secretKeyRef" in value, f"{path.name}: {name}"
    assert len(token_secrets) == 1  # the same token on the head, the workers and the job submitter


def test_ray_ports_stay_inside_the_cluster_network():
    (cluster,) = load(KUBERAY / "raycluster.yaml")
    assert cluster["spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"
    (policy,) = load(KUBERAY / "networkpolicy.yaml")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    for rule in policy["spec"]["ingress"]:
        assert all("podSelector" in source and "ipBlock" not in source for source in rule["from"])


def test_the_rayjob_runs_a_sweep_file_of_this_repository_on_the_cluster():
    (job,) = load(KUBERAY / "sweep" / "rayjob.yaml")
    (cluster,) = load(KUBERAY / "raycluster.yaml")
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    check_sweep_command(shlex.split(job["spec"]["entrypoint"]))
    for _, container in containers(job):
        assert container["image"] in image_targets()


# ---------------------------------------------------------------------------------------------- AWS autoscaler


def test_the_aws_cluster_file_is_valid_for_the_pinned_ray():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    (config,) = load(INFRA / "ray" / "aws.yaml")
    jsonschema.validate(config, schema)
    assert config["docker"]["image"].rsplit("/", 1)[-1] in image_targets()


def test_aws_nodes_share_storage_and_environment_and_open_nothing_to_the_world():
    (config,) = load(INFRA / "ray" / "aws.yaml")
    options = " ".join(config["docker"]["run_options"])
    assert f"--volume {SHARED}:{SHARED}" in options
    for name in ("FLOWSTEER_CACHE_DIR", "FLOWSTEER_OGBENCH_DIR"):
        assert f"--env {name}={SHARED}/" in options
    assert "--env XLA_CLIENT_MEM_FRACTION=" in options and "--env RAY_AUTH_MODE=token" in options
    # Credentials reach the containers through an env file written on each node from SSM, never from here.
    assert "--env-file /etc/flowsteer/cluster.env" in options
    init = " ".join(config["initialization_commands"])
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "RAY_AUTH_TOKEN"):
        assert f"{name}=$(aws ssm get-parameter" in init
    # Own security groups on every node type: the autoscaler's default group opens SSH to 0.0.0.0/0.
    for node_type in config["available_node_types"].values():
        assert node_type["node_config"]["SecurityGroupIds"]
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head  # reached through `ray dashboard` (an SSH tunnel)
    assert "0.0.0.0" not in yaml.safe_dump(config)


# ---------------------------------------------------------------------------------------------- MLflow server


def test_the_mlflow_compose_file_has_postgres_artifacts_and_auth_and_binds_to_localhost():
    (compose,) = load(INFRA / "mlflow" / "docker-compose.yml")
    services = compose["services"]
    mlflow, postgres = services["mlflow"], services["postgres"]
    context = (INFRA / "mlflow" / mlflow["build"]["context"]).resolve()
    assert context == REPO and (context / mlflow["build"]["dockerfile"]).exists()
    command = mlflow["command"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    env = mlflow["environment"]
    backend = env["MLFLOW_BACKEND_STORE_URI"]
    assert backend.startswith("postgresql://") and "@postgres:" in backend  # the compose file's own database
    artifacts = env["MLFLOW_ARTIFACTS_DESTINATION"]
    assert any(v.rsplit(":", 1)[-1] == artifacts for v in mlflow["volumes"])  # artifacts outlive the container
    for port in mlflow["ports"]:  # [host:]host_port:container_port, the host by default localhost only
        host = port.rsplit(":", 2)[0]
        assert host == "127.0.0.1" or (host.startswith("${") and host.endswith(":-127.0.0.1}")), port
    assert "ports" not in postgres and compose["networks"]["backend"]["internal"] is True
    # Every secret is interpolated from the git-ignored .env, and required (`:?`), never written here.
    for service in services.values():
        for name, value in service.get("environment", {}).items():
            if any(word in name for word in SECRET_NAMES):
                assert value.startswith("${") and ":?" in value, name
    auth = (INFRA / "mlflow" / "basic_auth.ini").read_text()
    assert "admin_password" not in auth.replace("# admin_password", "")


def test_the_env_example_holds_placeholders_only_and_the_real_env_file_is_ignored():
    example = (INFRA / "mlflow" / ".env.example").read_text().splitlines()
    values = dict(line.split("=", 1) for line in example if line and not line.startswith("#"))
    for name, value in values.items():
        if any(word in name for word in SECRET_NAMES):
            assert value == "REPLACE_ME", name
    (compose,) = load(INFRA / "mlflow" / "docker-compose.yml")
    used = json.dumps(compose)
    assert all(f"${{{name}" in used for name in values)  # the example lists what compose reads
    ignored = subprocess.run(["git", "check-ignore", "-q", "infra/mlflow/.env"], cwd=REPO)
    assert ignored.returncode == 0
