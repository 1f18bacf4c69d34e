"""Raw environment throughput (random actions, jit + vmap + scan).

    python experiments/bench_envs.py --envs CartPole-v1,Breakout-MinAtar,brax/hopper --num-envs 1024
"""

import argparse

from jaxrl.envbench import DEMO_ENV_IDS, format_row, measure_throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default=",".join(DEMO_ENV_IDS))
    parser.add_argument("--num-envs", default="1,64,1024", help="comma-separated batch sizes")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--brax-backend", default=None, help="backend for brax/* ids")
    args = parser.parse_args()
    for env_id in args.envs.split(","):
        kwargs = {"backend": args.brax_backend} if env_id.startswith("brax/") and args.brax_backend else {}
        for n in map(int, args.num_envs.split(",")):
            steps = args.steps if not env_id.startswith("brax/") else min(args.steps, 200)
            print(format_row(measure_throughput(env_id, num_envs=n, num_steps=steps, **kwargs)), flush=True)


if __name__ == "__main__":
    main()
