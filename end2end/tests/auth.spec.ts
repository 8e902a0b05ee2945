import { test, expect, expectConsoleError, waitForHydration } from './fixtures';

test('the demo customer can sign in with the credentials the dev sign-in page shows, then sign out', async ({ page }) => {
  await page.goto('/sign-in');
  await waitForHydration(page);
  const hint = page.getByRole('complementary', { name: 'Development demo account' });
  await expect(hint).toContainText('demo@example.com');
  await page.getByLabel('Email').fill('demo@example.com');
  await page.getByLabel('Password').fill('demo-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(/\/account\/cards$/);
  await expect(page.getByRole('banner')).toContainText('Demo Customer');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/sign-in$/);
  await expect(page.getByRole('banner')).not.toContainText('Demo Customer');
  await page.goto('/account/cards');
  await expect(page.getByRole('link', { name: 'Sign in' }).last()).toBeVisible();
});

test('a wrong password gives a plain message and keeps the customer on the form', async ({ page, consoleErrors }) => {
  await page.goto('/sign-in');
  await waitForHydration(page);
  await page.getByLabel('Email').fill('demo@example.com');
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert').filter({ hasText: /don't match/ })).toBeVisible();
  await expect(page).toHaveURL(/\/sign-in/);
  expectConsoleError(consoleErrors, /status of 401/);
});

test('sign-up explains what is wrong with the input', async ({ page, consoleErrors }) => {
  await page.goto('/sign-up');
  await waitForHydration(page);
  await page.getByLabel('Name').fill('Shorty');
  await page.getByLabel('Email').fill(`shorty-${Date.now()}@example.com`);
  // Bypass the browser's own minlength check to reach the server's message.
  await page.getByLabel('Password', { exact: true }).evaluate((el) => el.removeAttribute('minlength'));
  await page.getByLabel('Password', { exact: true }).fill('short');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByRole('alert').filter({ hasText: 'at least 8 characters' })).toBeVisible();
  expectConsoleError(consoleErrors, /status of 422/);
});
