import { test, expect, Page } from '@playwright/test';

const OUT = '../docs/screenshots';

async function signUp(page: Page) {
  await page.goto('/sign-up');
  await expect(page.locator('[data-hydrated="true"]')).toBeVisible();
  await page.getByLabel('Name').fill('Ada Lovelace');
  await page.getByLabel('Email').fill(`ada-${Date.now()}-${Math.random()}@example.com`);
  await page.getByLabel('Password', { exact: true }).fill('a long password');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page).toHaveURL(/\/account\/cards$/);
  await expect(page.locator('[data-hydrated="true"]')).toBeVisible();
}

async function addCard(page: Page, number: string, submit = true) {
  const before = new URL(page.url()).searchParams.get('adding');
  await page.getByRole('button', { name: 'Add card' }).click();
  await expect.poll(() => new URL(page.url()).searchParams.get('adding')).not.toBe(before);
  const frame = page.frameLocator('iframe[title="Jetpay secure card form"]');
  await frame.getByLabel('Card number').fill(number);
  await frame.getByLabel(/Expiry date/).fill('12/34');
  await frame.getByLabel('Security code (CVC)').fill('123');
  await frame.getByLabel('Name on card').fill('Ada Lovelace');
  await frame.getByLabel('Postal code').fill('H2X 1Y4');
  if (submit) {
    await frame.getByRole('button', { name: 'Save card' }).click();
    await expect(frame.getByRole('heading', { name: 'Card received' })).toBeVisible();
  }
}

for (const [device, viewport] of [
  ['desktop', { width: 1100, height: 820 }],
  ['phone', { width: 390, height: 844 }],
] as const) {
  test(`screenshots (${device})`, async ({ page }) => {
    await page.setViewportSize(viewport);
    await signUp(page);
    await page.screenshot({ path: `${OUT}/empty-${device}.png`, fullPage: true });

    await addCard(page, '4242 4242 4242 4242', false);
    await page.screenshot({ path: `${OUT}/pending-${device}.png`, fullPage: true });
    await page.frameLocator('iframe').getByRole('button', { name: 'Save card' }).click();
    await expect(page.locator('[data-state="active"]')).toHaveCount(1);
    await page.screenshot({ path: `${OUT}/active-${device}.png`, fullPage: true });

    await addCard(page, '4000 0000 0000 0002');
    await expect(page.locator('[data-state="failed"]')).toHaveCount(1);
    await page.screenshot({ path: `${OUT}/failed-${device}.png`, fullPage: true });
  });
}
