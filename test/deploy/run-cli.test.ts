import { runCli, runCliOk } from './support/run-cli.js';

describe('running the command-line tools of the deployment tests', () => {
  it('fails with the tool and how to install it when the tool is missing, instead of skipping', () => {
    expect(() => runCli('promtool-that-is-not-installed', ['--version'])).toThrow(
      'promtool-that-is-not-installed is not installed, and the deployment tests need it',
    );
  });

  it('throws with the output of a tool that exits non-zero', () => {
    expect(() => runCliOk('node', ['-e', 'console.error("broken"); process.exit(3)'])).toThrow(
      /exited 3[\s\S]*broken/,
    );
  });
});
