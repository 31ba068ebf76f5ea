"""The discord.py bot of the original request (the blog post's example), pointed at the
simulator: what issue #18 compares Disco's cost per command with, in the same run.

    DISCORD_TOKEN=... DISCORD_API_URL=http://127.0.0.1:PORT DISCORD_GATEWAY_URL=ws://... python bot.py

Not part of the platform: the benchmarks start it (`just bench-up`, `just bench-fleet`) when
`scripts/bench-python` has installed discord.py.
"""

import os

import discord
import yarl
from discord.ext import commands

# Discord's addresses, which discord.py holds as constants, are the simulator's.
discord.http.Route.BASE = os.environ["DISCORD_API_URL"].rstrip("/") + "/api/v10"
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["DISCORD_GATEWAY_URL"])

intents = discord.Intents.default()
intents.message_content = True
bot = commands.Bot(command_prefix="~~", intents=intents)


@bot.event
async def on_ready():
    print(bot.user.name, bot.user.id, flush=True)
    print("Hi, Disco~ d`d`Disco~ d`d`Disco~ d`d`Disco~~~", flush=True)


@bot.command()
async def ping(ctx):
    await ctx.send(f"pong! ({round(bot.latency * 1000)}ms)")


bot.run(os.environ["DISCORD_TOKEN"], log_handler=None)
